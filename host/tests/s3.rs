//! `POST /api/upload-random` and `GET /api/uploads` end to end: the real component under the
//! real host, signing its requests for a real S3-compatible server (s3s-fs, which checks every
//! signature and checksum), and the stored objects read back from the server's own directory.

mod support;

use std::path::Path;

use sha2::{Digest, Sha256};
use support::s3::{self, ACCESS_KEY, S3Server, SECRET_KEY};
use support::*;

const BUCKET: &str = "greeter-uploads";

/// The app configured for `server` through `SPIN_VARIABLE_S3_*`, path style.
fn host_for(server: &S3Server, state: &Path, overrides: &[(&str, &str)]) -> Host {
    s3::app_with_s3(server, BUCKET, state, overrides).start()
}

fn upload(host: &Host, query: &str) -> Reply {
    send(
        "POST",
        &host.url(&format!("/api/upload-random{query}")),
        "text/plain",
        b"",
    )
}

fn error(reply: &Reply) -> (u16, String, String) {
    let body = reply.json();
    let text = |field: &str| body["error"][field].as_str().unwrap_or_default().to_owned();
    (reply.status, text("code"), text("message"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bind every field: the directory is deleted when `_dir` is dropped.
struct Setup {
    _dir: tempfile::TempDir,
    server: S3Server,
    host: Host,
}

/// A server with the bucket, and the app pointed at it.
fn setup(create_bucket: bool, overrides: &[(&str, &str)]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(&dir.path().join("s3"));
    if create_bucket {
        server.create_bucket(BUCKET);
    }
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let host = host_for(&server, &state, overrides);
    Setup {
        _dir: dir,
        server,
        host,
    }
}

#[test]
fn uploads_of_several_sizes_are_stored_byte_for_byte() {
    let Setup { _dir, server, host } = setup(true, &[]);
    let mut digests = Vec::new();
    for (query, size) in [
        ("?bytes=1", 1),
        ("", 1024),
        ("?bytes=1024", 1024),
        ("?bytes=1048576", 1_048_576),
    ] {
        let reply = upload(&host, query);
        assert_eq!(reply.status, 201, "{query}: {}", reply.body);
        let answer = reply.json();
        assert_eq!(answer["bucket"], BUCKET);
        assert_eq!(answer["bytes"], size);
        let key = answer["key"].as_str().unwrap();
        let (date, name) = key
            .strip_prefix("random/")
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_else(|| panic!("{key}"));
        assert_eq!(date.len(), 10, "{key}");
        assert!(name.ends_with(".bin") && name.len() == 40, "{key}");
        assert_eq!(&name[14..15], "7", "a UUIDv7: {key}");

        // Read back from the server's directory, not through the component.
        let stored = server
            .object(BUCKET, key)
            .unwrap_or_else(|| panic!("{key} is not in the bucket"));
        assert_eq!(stored.len(), size, "{key}");
        let sha256 = Sha256::digest(&stored);
        assert_eq!(answer["sha256"], hex(&sha256), "{key}");
        let info = server.stored_info(BUCKET, key);
        assert_eq!(
            info["checksum_sha256"],
            s3::base64(&sha256, s3::STANDARD),
            "the server checked x-amz-checksum-sha256"
        );
        assert_eq!(answer["etag"], info["e_tag"], "the ETag is the server's");
        digests.push(hex(&sha256));
    }
    digests.sort();
    digests.dedup();
    assert_eq!(digests.len(), 4, "every upload has its own random bytes");
}

#[test]
fn lists_the_most_recent_uploads_newest_first() {
    let Setup { _dir, server, host } = setup(true, &[]);
    // An older day's object, put there as another writer would.
    let old = server.root.join(BUCKET).join("random/2001-01-01");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("old.bin"), b"old").unwrap();
    std::fs::write(server.root.join(BUCKET).join("elsewhere.txt"), b"x").unwrap();

    let mut keys = Vec::new();
    for _ in 0..3 {
        let reply = upload(&host, "?bytes=16");
        assert_eq!(reply.status, 201, "{}", reply.body);
        keys.push(reply.json()["key"].as_str().unwrap().to_owned());
        // UUIDv7 keys of the same millisecond order by their random bits.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let listed = |query: &str| -> Vec<serde_json::Value> {
        let reply = get(&host.url(&format!("/api/uploads{query}")));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["bucket"], BUCKET);
        reply.json()["items"].as_array().unwrap().clone()
    };
    let all = listed("");
    let listed_keys: Vec<&str> = all.iter().map(|i| i["key"].as_str().unwrap()).collect();
    assert_eq!(
        listed_keys,
        [
            keys[2].as_str(),
            keys[1].as_str(),
            keys[0].as_str(),
            "random/2001-01-01/old.bin"
        ]
    );
    assert_eq!(all[0]["bytes"], 16);
    assert!(
        all[0]["last_modified"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    // AWS lists each object's ETag; s3s-fs lists none.
    let etag = &all[0]["etag"];
    assert!(
        etag.is_null() || *etag == server.stored_info(BUCKET, &keys[2])["e_tag"],
        "{etag}"
    );
    let two = listed("?limit=2");
    assert_eq!(two.len(), 2);
    assert_eq!(two[0]["key"], keys[2].as_str());
    assert_eq!(two[1]["key"], keys[1].as_str());
    assert_eq!(error(&get(&host.url("/api/uploads?limit=101"))).0, 400);
}

/// A refused upload is a 502. Under the full suite's load, the upload's connection once
/// failed before its answer was read, twice (`HttpProtocolError`, after the one retry: an
/// `upstream_unavailable`), as when a server answers from the headers and closes with the
/// body unread, so that the kernel resets the connection. So the upload's code is checked
/// only when the answer came through; S3's code is checked on the listing, a request
/// without a body.
fn assert_refused_upload(host: &Host, s3_code: &str) {
    let (status, code, message) = error(&upload(host, ""));
    assert_eq!(status, 502, "{message}");
    match code.as_str() {
        "upstream_error" => assert!(message.contains(s3_code), "{message}"),
        "upstream_unavailable" => {}
        other => panic!("{other}: {message}"),
    }
}

#[test]
fn a_wrong_secret_is_a_502_with_s3s_code() {
    let Setup { _dir, server, host } = setup(true, &[("S3_SECRET_ACCESS_KEY", "not-the-secret")]);
    let (status, code, message) = error(&get(&host.url("/api/uploads")));
    assert_eq!(
        (status, code.as_str()),
        (502, "upstream_error"),
        "{message}"
    );
    assert!(message.contains("SignatureDoesNotMatch"), "{message}");
    assert!(!message.contains("not-the-secret"), "{message}");
    assert_refused_upload(&host, "SignatureDoesNotMatch");
    let bucket = std::fs::read_dir(server.root.join(BUCKET)).unwrap();
    assert_eq!(bucket.count(), 0, "nothing was stored");
}

#[test]
fn an_unknown_access_key_is_a_502_with_s3s_code() {
    let Setup {
        _dir,
        server: _server,
        host,
    } = setup(true, &[("S3_ACCESS_KEY_ID", "AKIDUNKNOWN")]);
    let (status, code, message) = error(&get(&host.url("/api/uploads")));
    assert_eq!(
        (status, code.as_str()),
        (502, "upstream_error"),
        "{message}"
    );
    // AWS says InvalidAccessKeyId; s3s-fs says NotSignedUp.
    assert!(
        message.contains("InvalidAccessKeyId") || message.contains("NotSignedUp"),
        "{message}"
    );
    assert_refused_upload(&host, "NotSignedUp");
}

/// s3s-fs creates a missing bucket's directory on PutObject (AWS, MinIO and Garage answer
/// NoSuchBucket, a mapping the unit tests cover), so the listing is where a missing bucket
/// shows here.
#[test]
fn a_missing_bucket_is_a_502_no_such_bucket() {
    let Setup {
        _dir,
        server: _server,
        host,
    } = setup(false, &[]);
    let (status, code, message) = error(&get(&host.url("/api/uploads")));
    assert_eq!(
        (status, code.as_str()),
        (502, "upstream_error"),
        "{message}"
    );
    assert!(message.contains("NoSuchBucket"), "{message}");
}

#[test]
fn a_stopped_server_is_a_502_upstream_unavailable() {
    let Setup {
        _dir,
        mut server,
        host,
    } = setup(true, &[]);
    assert_eq!(upload(&host, "").status, 201);
    server.stop();
    let (status, code, message) = error(&upload(&host, ""));
    assert_eq!(
        (status, code.as_str()),
        (502, "upstream_unavailable"),
        "{message}"
    );
    assert!(
        message.contains(&server.endpoint()) && message.contains("ConnectionRefused"),
        "{message}"
    );
    let (status, code, _) = error(&get(&host.url("/api/uploads")));
    assert_eq!((status, code.as_str()), (502, "upstream_unavailable"));
}

#[test]
fn sizes_out_of_range_are_400_and_store_nothing() {
    let Setup { _dir, server, host } = setup(true, &[]);
    for query in ["?bytes=1048577", "?bytes=0", "?bytes=-5", "?bytes=big"] {
        let (status, code, message) = error(&upload(&host, query));
        assert_eq!(
            (status, code.as_str()),
            (400, "invalid_parameter"),
            "{query}: {message}"
        );
    }
    let bucket = std::fs::read_dir(server.root.join(BUCKET)).unwrap();
    assert_eq!(bucket.count(), 0);
}

#[test]
fn an_endpoint_outside_allowed_outbound_hosts_is_never_reached() {
    // The manifest allows only s3_endpoint; virtual-hosted style sends to
    // <bucket>.<endpoint host>, which it does not allow.
    let Setup { _dir, server, host } = setup(
        true,
        &[
            ("S3_ENDPOINT", "http://localhost:1"),
            ("S3_PATH_STYLE", "false"),
        ],
    );
    let (status, code, message) = error(&upload(&host, ""));
    assert_eq!(
        (status, code.as_str()),
        (502, "upstream_unavailable"),
        "{message}"
    );
    assert!(message.contains("allowed_outbound_hosts"), "{message}");
    drop(server);
}

/// A server that accepts connections and never answers: the component gives up after its
/// 10 s deadline (on wasi:clocks, so it holds under Spin too, whose outbound requests have no
/// timeout of their own) and says so, well before greeter-host's 30 s request timeout.
#[test]
fn a_silent_server_is_a_504_upstream_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for connection in listener.incoming() {
            held.push(connection);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let host = HostBuilder::new(&app_manifest(), dir.path())
        .env("SPIN_VARIABLE_S3_ENDPOINT", &endpoint)
        .env("SPIN_VARIABLE_S3_BUCKET", BUCKET)
        .env("SPIN_VARIABLE_S3_ACCESS_KEY_ID", ACCESS_KEY)
        .env("SPIN_VARIABLE_S3_SECRET_ACCESS_KEY", SECRET_KEY)
        .start();
    let started = std::time::Instant::now();
    let (status, code, message) = error(&upload(&host, ""));
    let waited = started.elapsed();
    assert_eq!(
        (status, code.as_str()),
        (504, "upstream_timeout"),
        "{message}"
    );
    assert!(message.contains(&endpoint), "{message}");
    assert!(
        (9..25).contains(&waited.as_secs()),
        "answered after {waited:?}"
    );
}
