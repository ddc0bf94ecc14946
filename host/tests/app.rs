//! The Greeter app end to end: the real component under the real host, every route over
//! HTTP, greetings persisting across a restart and a `kill -9`; run from its spin.toml, and
//! again (make test) from a registry (`GREETER_TEST_APP_FROM=registry`).

mod support;

use serde_json::json;
use support::*;

fn start(state: &std::path::Path) -> Host {
    app_host(state).start()
}

fn error_code(reply: &Reply) -> String {
    reply.json()["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn hello_routes() {
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path());
    let root = get(&host.url("/"));
    assert_eq!((root.status, root.body.as_str()), (200, "hello world!"));
    assert!(
        root.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );

    let hello = get(&host.url("/hello/J%C3%BCrgen"));
    assert_eq!(hello.status, 200);
    assert_eq!(hello.json(), json!({ "message": "Hello, Jürgen!" }));
    assert_eq!(
        get(&host.url(&format!("/hello/{}", "x".repeat(65)))).status,
        400
    );
}

#[test]
fn greetings_lifecycle_and_validation() {
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path());
    let created = post_json(
        &host.url("/api/greetings"),
        &json!({ "name": "Ada", "message": "Hi there" }),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let record = created.json();
    let id = record["id"].as_str().unwrap();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/greetings/{id}").as_str())
    );
    assert_eq!(
        (record["name"].as_str(), record["message"].as_str()),
        (Some("Ada"), Some("Hi there"))
    );
    assert!(record["created_at"].as_str().unwrap().ends_with('Z'));

    assert_eq!(
        get(&host.url(&format!("/api/greetings/{id}"))).json(),
        record
    );
    let second = post_json(&host.url("/api/greetings"), &json!({ "name": "Grace" })).json();
    let list = get(&host.url("/api/greetings")).json();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second["id"].as_str().unwrap(), id], "newest first");

    let replaced = send(
        "PUT",
        &host.url(&format!("/api/greetings/{id}")),
        "application/json",
        br#"{"name":"Ada L."}"#,
    );
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_eq!(replaced.json()["name"], "Ada L.");
    assert_eq!(replaced.json()["created_at"], record["created_at"]);

    assert_eq!(
        delete(&host.url(&format!("/api/greetings/{id}"))).status,
        204
    );
    let gone = get(&host.url(&format!("/api/greetings/{id}")));
    assert_eq!(
        (gone.status, error_code(&gone).as_str()),
        (404, "not_found")
    );

    let url = host.url("/api/greetings");
    let cases: [(&[u8], &str, u16, &str); 6] = [
        (b"{not json", "application/json", 400, "invalid_json"),
        (
            br#"{"name":"Ada"}"#,
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            br#"{"name":""}"#,
            "application/json",
            422,
            "validation_failed",
        ),
        (
            br#"{"name":" \t "}"#,
            "application/json",
            422,
            "validation_failed",
        ),
        (
            br#"{"name":"Ada","colour":"red"}"#,
            "application/json",
            422,
            "validation_failed",
        ),
        (
            br#"{"name":42}"#,
            "application/json",
            422,
            "validation_failed",
        ),
    ];
    for (body, content_type, status, code) in cases {
        let reply = send("POST", &url, content_type, body);
        assert_eq!(
            (reply.status, error_code(&reply).as_str()),
            (status, code),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let oversize = json!({ "name": "Ada", "message": "x".repeat(17 * 1024) });
    let reply = post_json(&url, &oversize);
    assert_eq!(
        (reply.status, error_code(&reply).as_str()),
        (413, "payload_too_large")
    );
    assert_eq!(get(&host.url("/api/greetings?limit=101")).status, 400);
}

#[test]
fn probes_mirror_upload_and_errors() {
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path());
    assert_eq!(
        get(&host.url("/api/health")).json(),
        json!({ "status": "ok" })
    );
    assert_eq!(get(&host.url("/api/ready")).status, 200);

    let mirrored = get(&host.url("/api/mirror?word=abcABC123987"));
    assert_eq!(mirrored.json(), json!({ "transformed": "789321cbaCBA" }));
    let unicode = get(&host.url("/api/mirror?word=%C3%A9t%C3%A9%20%F0%9F%91%8D"));
    assert_eq!(unicode.json(), json!({ "transformed": "👍 ÉTÉ" }));
    assert_eq!(get(&host.url("/api/mirror")).status, 400);
    assert_eq!(
        get(&host.url(&format!("/api/mirror?word={}", "a".repeat(1025)))).status,
        400
    );

    let upload = send(
        "POST",
        &host.url("/api/upload-random"),
        "application/json",
        b"",
    );
    assert_eq!(
        (upload.status, error_code(&upload).as_str()),
        (503, "not_configured")
    );
    assert!(
        upload.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("s3_"),
        "{}",
        upload.body
    );

    let missing = get(&host.url("/nope"));
    assert_eq!(
        (missing.status, error_code(&missing).as_str()),
        (404, "not_found")
    );
    // HEAD: GET's status and head, and no body. A body the app writes at once goes out with
    // its length (the host holds the head for it), not chunked, from either build.
    for path in ["/", "/api/mirror?word=aB", "/nope"] {
        let (full, head_only) = (get(&host.url(path)), head(&host.url(path)));
        let length = full.body.len().to_string();
        assert_eq!(
            full.header("content-length"),
            Some(length.as_str()),
            "{path}"
        );
        assert_eq!(head_only.status, full.status, "{path}");
        for name in ["content-type", "content-length"] {
            assert_eq!(head_only.header(name), full.header(name), "{path} {name}");
        }
        assert_eq!(head_only.body, "", "{path}");
    }

    let wrong_method = delete(&host.url("/api/health"));
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("allow"), Some("GET, HEAD"));
}

#[test]
fn openapi_and_docs() {
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path());
    let document = get(&host.url("/openapi.json")).json();
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/",
        "/hello/{name}",
        "/api/greetings",
        "/api/greetings/{id}",
        "/api/mirror",
        "/api/upload-random",
    ] {
        assert!(
            document["paths"].get(path).is_some(),
            "{path} is documented"
        );
    }
    let docs = get(&host.url("/docs"));
    assert_eq!(docs.status, 200);
    assert!(
        docs.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(docs.body.contains("/openapi.json"));
}

#[test]
fn greetings_survive_a_restart_and_a_kill_9() {
    let state = tempfile::tempdir().unwrap();
    let host = start(state.path());
    let before = post_json(&host.url("/api/greetings"), &json!({ "name": "Ada" })).json();
    drop(host); // SIGKILL from Drop, right after the acknowledged write

    let host = start(state.path());
    let id = before["id"].as_str().unwrap();
    assert_eq!(
        get(&host.url(&format!("/api/greetings/{id}"))).json(),
        before
    );
    let after = post_json(&host.url("/api/greetings"), &json!({ "name": "Grace" }));
    assert_eq!(after.status, 201);
    host.signal(libc::SIGKILL);
    let _ = host.wait(std::time::Duration::from_secs(5));

    let host = start(state.path());
    let id = after.json()["id"].as_str().unwrap().to_string();
    assert_eq!(get(&host.url(&format!("/api/greetings/{id}"))).status, 200);
    assert_eq!(
        get(&host.url("/api/greetings")).json()["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}
