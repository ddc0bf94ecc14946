//! The app against its own OpenAPI document: schemathesis (tests/requirements.txt, in the
//! test venv) generates requests for every operation from `/openapi.json` (examples, boundary
//! cases, fuzzing, and stateful sequences through the document's links) and runs every check
//! on the answers, with the S3 routes against the test S3 server. A parameter the document
//! allows and the app refuses, or an answer the document does not describe, fails it.

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::s3::{ACCESS_KEY, REGION, S3Server, SECRET_KEY};
use support::*;

const BUCKET: &str = "contract-uploads";

fn schemathesis() -> PathBuf {
    let cache = std::env::var_os("GREETER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/greeter"));
    let binary = cache.join("venv/bin/schemathesis");
    assert!(
        binary.exists(),
        "{} is missing: .ci/setup installs it (make test runs it)",
        binary.display()
    );
    binary
}

#[test]
fn every_operation_answers_as_its_openapi_document_says() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    s3.create_bucket(BUCKET);
    let endpoint = s3.endpoint();
    let mut builder = HostBuilder::new(&app_manifest(), &dir.path().join("state"));
    for (name, value) in [
        ("S3_ENDPOINT", endpoint.as_str()),
        ("S3_REGION", REGION),
        ("S3_BUCKET", BUCKET),
        ("S3_PATH_STYLE", "true"),
        ("S3_ACCESS_KEY_ID", ACCESS_KEY),
        ("S3_SECRET_ACCESS_KEY", SECRET_KEY),
    ] {
        builder = builder.env(&format!("SPIN_VARIABLE_{name}"), value);
    }
    let host = builder.start();
    let output = Command::new(schemathesis())
        .arg("run")
        .arg(host.url("/openapi.json"))
        .args(["--checks", "all", "--max-examples", "30", "--seed", "1"])
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .output()
        .expect("running schemathesis");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains("13 selected / 13 total"),
        "every operation: {report}"
    );
    assert!(
        std::fs::read_dir(s3.root.join(BUCKET))
            .unwrap()
            .next()
            .is_some(),
        "upload-random reached S3"
    );
}
