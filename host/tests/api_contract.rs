//! The app against its own OpenAPI document: schemathesis (tests/requirements.txt, in the
//! test venv) generates requests for every operation from `/openapi.json` (examples, boundary
//! cases, fuzzing, and stateful sequences through the document's links) and runs every check
//! on the answers, with the S3 routes against the test S3 server. A parameter the document
//! allows and the app refuses, or an answer the document does not describe, fails it.

mod support;

use std::path::PathBuf;
use std::process::Command;
use support::s3::{self, S3Server};
use support::*;

const BUCKET: &str = "contract-uploads";

fn schemathesis() -> PathBuf {
    let binary = cache_dir().join("venv/bin/schemathesis");
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
    let host = s3::app_with_s3(&s3, BUCKET, &dir.path().join("state"), &[]).start();
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
