//! OpenTelemetry traces: greeter-host exports them over OTLP/HTTP to a receiver this test
//! runs (decoding the payload with OpenTelemetry's own protobuf types), continues the
//! client's W3C trace and passes it on to the components' outbound requests. make test runs
//! it against both builds of the app: in a reused 0.3 instance too, a request's key-value
//! and outbound spans are its children.

mod support;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind};
use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// An HTTP/1.1 request's head, line by line, and its body.
type Received = (Vec<String>, Vec<u8>);

fn read_request(stream: &mut TcpStream) -> Received {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let length = head
        .iter()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(str::to_string)
        })
        .map_or(0, |n| n.parse().unwrap());
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    (head, body)
}

/// A loopback HTTP server answering every request with `status`, keeping what came.
struct Receiver {
    address: String,
    requests: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(status: &'static str) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let kept = requests.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let request = read_request(&mut stream);
                kept.lock().unwrap().push(request);
                let answer =
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        Receiver { address, requests }
    }

    /// Every span exported so far, with the `service.name` of its resource.
    fn spans(&self) -> Vec<(String, Span)> {
        let mut spans = Vec::new();
        for (head, body) in self.requests.lock().unwrap().iter() {
            assert!(head[0].starts_with("POST /v1/traces "), "{head:?}");
            let export = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            for resource_spans in export.resource_spans {
                let service = resource_spans
                    .resource
                    .iter()
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == "service.name")
                    .map(|a| format!("{:?}", a.value))
                    .unwrap_or_default();
                for scope in resource_spans.scope_spans {
                    spans.extend(scope.spans.into_iter().map(|s| (service.clone(), s)));
                }
            }
        }
        spans
    }

    fn headers(&self) -> Vec<Vec<String>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(head, _)| head.clone())
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<String> {
    let value = span
        .attributes
        .iter()
        .find(|a| a.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(s) => s.clone(),
        Value::IntValue(i) => i.to_string(),
        other => format!("{other:?}"),
    })
}

/// The app, its S3 endpoint `upstream`, exporting to `collector` with `otel` set.
fn traced_host(
    state: &Path,
    collector: &Receiver,
    upstream: &Receiver,
    otel: &[(&str, &str)],
) -> Host {
    let mut builder = app_host(state)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.address)
        // Export every 100 ms rather than every 5 s.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100");
    for (name, value) in otel {
        builder = builder.env(name, value);
    }
    let s3 = [
        ("S3_ENDPOINT", upstream.address.as_str()),
        ("S3_REGION", "us-east-1"),
        ("S3_BUCKET", "greeter-uploads"),
        ("S3_PATH_STYLE", "true"),
        ("S3_ACCESS_KEY_ID", "test"),
        ("S3_SECRET_ACCESS_KEY", "test"),
    ];
    for (name, value) in s3 {
        builder = builder.env(&format!("SPIN_VARIABLE_{name}"), value);
    }
    builder.start()
}

fn post_with_traceparent(host: &Host, path: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect(host.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\ncontent-type: application/json\r\n\
         traceparent: 00-{TRACE_ID}-{CLIENT_SPAN_ID}-01\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

/// A greeting written and an upload refused by its S3 endpoint, each sent with the client's
/// `traceparent`, by the app with `otel` set: the collector and the S3 endpoint, and what
/// must outlive them.
fn greet_and_upload(otel: &[(&str, &str)]) -> (Receiver, Receiver, Host, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let collector = Receiver::start("200 OK");
    let upstream = Receiver::start("503 Service Unavailable");
    let host = traced_host(state.path(), &collector, &upstream, otel);
    assert_eq!(
        post_with_traceparent(&host, "/api/greetings", r#"{"name":"Ada"}"#),
        201
    );
    assert_eq!(post_with_traceparent(&host, "/api/upload-random", ""), 502);
    (collector, upstream, host, state)
}

#[test]
fn requests_key_value_calls_and_outbound_requests_are_spans_of_the_clients_trace() {
    let (collector, upstream, _host, _state) =
        greet_and_upload(&[("OTEL_SERVICE_NAME", "greeter-test")]);

    let mut spans = Vec::new();
    eventually("the spans of both requests exported", || {
        spans = collector.spans();
        spans
            .iter()
            .filter(|(_, s)| s.kind == SpanKind::Server as i32)
            .count()
            == 2
            && spans.iter().any(|(_, s)| s.name == "PUT")
    });
    assert!(
        spans
            .iter()
            .all(|(service, _)| service.contains("greeter-test")),
        "{spans:?}"
    );
    let servers: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    for server in &servers {
        assert_eq!(
            hex(&server.trace_id),
            TRACE_ID,
            "the client's trace continues"
        );
        assert_eq!(hex(&server.parent_span_id), CLIENT_SPAN_ID);
        assert_eq!(server.name, "POST /...");
        assert_eq!(attribute(server, "http.route").as_deref(), Some("/..."));
        assert_eq!(
            attribute(server, "spin.component_id").as_deref(),
            Some("greeter")
        );
    }
    let status = |span: &Span| attribute(span, "http.response.status_code");
    let created = servers
        .iter()
        .find(|s| status(s).as_deref() == Some("201"))
        .expect("the POST's span");
    let uploaded = servers
        .iter()
        .find(|s| status(s).as_deref() == Some("502"))
        .expect("the upload's span");

    let children = |parent: &Span| -> Vec<&Span> {
        spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.parent_span_id == parent.span_id)
            .collect()
    };
    let key_value: Vec<&str> = children(created).iter().map(|s| s.name.as_str()).collect();
    assert!(
        !key_value.is_empty()
            && key_value
                .iter()
                .all(|name| name.starts_with("spin_key_value.")),
        "the greeting's writes are its children: {key_value:?}"
    );
    assert!(
        children(created)
            .iter()
            .all(|s| s.kind == SpanKind::Client as i32
                && attribute(s, "kv.backend").as_deref() == Some("sqlite"))
    );

    let put = children(uploaded)
        .into_iter()
        .find(|s| s.name == "PUT")
        .expect("the upload's PUT");
    assert_eq!(put.kind, SpanKind::Client as i32);
    assert_eq!(status(put).as_deref(), Some("503"));
    assert_eq!(
        attribute(put, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    let sent = format!("traceparent: 00-{TRACE_ID}-{}-01", hex(&put.span_id));
    assert!(
        upstream
            .headers()
            .iter()
            .flatten()
            .any(|line| line.eq_ignore_ascii_case(&sent)),
        "the PUT carries its own span as the parent: {:?}",
        upstream.headers()
    );
}

#[test]
fn nothing_is_exported_when_the_sdk_is_disabled() {
    let (collector, upstream, _host, _state) = greet_and_upload(&[("OTEL_SDK_DISABLED", "true")]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(collector.headers().is_empty(), "{:?}", collector.headers());
    assert!(
        upstream
            .headers()
            .iter()
            .flatten()
            .all(|line| !line.to_ascii_lowercase().starts_with("traceparent")),
        "no trace context goes out either: {:?}",
        upstream.headers()
    );
}

#[test]
fn the_sampler_comes_from_the_environment() {
    let (collector, _upstream, _host, _state) =
        greet_and_upload(&[("OTEL_TRACES_SAMPLER", "always_off")]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(collector.spans().is_empty(), "{:?}", collector.spans());
}
