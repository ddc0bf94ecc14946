//! Outbound `wasi:http`: a component may reach only what its manifest lists in
//! `allowed_outbound_hosts`; anything else fails with `HTTP-request-denied`, as in Spin.
//! This module is the host's one place that reads URLs: the manifest's entries and each
//! outgoing request's target (with `url`'s host parser, so IPv6 literals work).
//!
//! Entry syntax, Spin's: `scheme://host[:port]`. The scheme may be `*`; the host may be `*`,
//! `*.domain` (subdomains only), a name, an IP address (`[…]` for IPv6) or a CIDR block; the
//! port may be a number, a range `start..end` (end excluded), or `*`. Without a port an entry
//! allows the scheme's well-known port. Spin's `self` (requests to the app itself) is not
//! implemented and is refused by name. Allowed requests are sent by [`send`].

mod send;

use super::{Observer, RequestSpan};
use anyhow::{Context, Result, bail, ensure};
use ipnet::IpNet;
use opentelemetry_http::HeaderInjector;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use url::Host;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// Where Spin's own messages send readers who get an entry wrong.
const SYNTAX_HELP: &str = "Learn more: https://spinframework.dev/v3/http-outbound#granting-http-permissions-to-components";

/// The parsed `allowed_outbound_hosts` of one component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowedHosts(Vec<AllowedHost>);

#[derive(Debug, Clone, PartialEq)]
struct AllowedHost {
    /// `None` for `*`.
    scheme: Option<String>,
    host: HostPattern,
    /// `None` for `*`.
    ports: Option<PortPattern>,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    /// `*.example.com`, kept as `.example.com`: any subdomain, not the domain itself.
    SubdomainsOf(String),
    Name(String),
    /// An IP address (a /32 or /128 block) or a CIDR block.
    Network(IpNet),
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    One(u16),
    Range(Range<u16>),
}

impl AllowedHosts {
    /// Parses rendered entries (variable templates already applied), with Spin's messages.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowedHosts> {
        if let [only] = entries
            && only.as_ref() == "insecure:allow-all"
        {
            bail!(
                "'insecure:allow-all' is not allowed - use '*://*:*' instead if you really want to allow all outbound traffic'"
            );
        }
        entries
            .iter()
            .map(|e| AllowedHost::parse(e.as_ref()))
            .collect::<Result<_>>()
            .map(AllowedHosts)
    }

    /// Whether a request to `uri` may go out.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let Ok(host) = Host::parse(host) else {
            return false;
        };
        let port = uri.port_u16().or_else(|| well_known_port(scheme));
        self.0
            .iter()
            .any(|allowed| allowed.allows(scheme, &host, port))
    }
}

/// Spin's default ports, for entries and URLs that name none.
fn well_known_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<AllowedHost> {
        let url = entry.trim();
        let Some((scheme, rest)) = url.split_once("://") else {
            match url {
                "*" | ":" | "" | "?" => bail!(
                    "{url:?} is not an allowed outbound host format.\nHosts must be in the form <scheme>://<host>[:<port>], with '*' wildcards allowed for each.\nIf you intended to allow all outbound networking, you can use '*://*:*' - this will obviate all network sandboxing.\n{SYNTAX_HELP}"
                ),
                _ => bail!(
                    "{url:?} does not contain a scheme (e.g., 'http://' or '*://')\n{SYNTAX_HELP}"
                ),
            }
        };
        let (host, port) = split_host_and_port(rest);
        let port = match port.split_once('/') {
            Some((_, path)) if !path.is_empty() => {
                bail!("{url:?} has a path but is not allowed to")
            }
            Some((port, _)) => port,
            None => port,
        };
        let ports = parse_ports(port, scheme)
            .with_context(|| format!("Invalid allowed host port {port:?}"))?;
        let scheme = parse_scheme(scheme)
            .with_context(|| format!("Invalid allowed host scheme {scheme:?}"))?;
        let host = parse_host(host).with_context(|| format!("Invalid allowed host {host:?}"))?;
        Ok(AllowedHost {
            scheme,
            host,
            ports,
        })
    }

    fn allows(&self, scheme: &str, host: &Host, port: Option<u16>) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match (&self.host, host) {
            (HostPattern::Any, _) => true,
            (HostPattern::SubdomainsOf(suffix), Host::Domain(name)) => {
                name.ends_with(suffix.as_str())
            }
            (HostPattern::Name(allowed), Host::Domain(name)) => allowed == name,
            (HostPattern::Network(net), Host::Ipv4(ip)) => net.contains(&IpAddr::from(*ip)),
            (HostPattern::Network(net), Host::Ipv6(ip)) => net.contains(&IpAddr::from(*ip)),
            _ => false,
        };
        let port_ok = match (&self.ports, port) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(PortPattern::One(allowed)), Some(port)) => *allowed == port,
            (Some(PortPattern::Range(range)), Some(port)) => range.contains(&port),
        };
        scheme_ok && host_ok && port_ok
    }
}

/// `host[:port][/]` → (host, port-and-rest); a bracketed IPv6 host keeps its colons.
fn split_host_and_port(rest: &str) -> (&str, &str) {
    if rest.starts_with('[')
        && let Some(end) = rest.find(']')
    {
        let (host, after) = rest.split_at(end + 1);
        return (host, after.strip_prefix(':').unwrap_or(after));
    }
    rest.rsplit_once(':').unwrap_or((rest, ""))
}

fn parse_scheme(scheme: &str) -> Result<Option<String>> {
    if scheme == "*" {
        return Ok(None);
    }
    ensure!(!scheme.starts_with('{'), "scheme lists are not supported");
    ensure!(
        scheme.chars().all(char::is_alphabetic),
        "only alphabetic characters are allowed"
    );
    Ok(Some(scheme.to_string()))
}

fn parse_host(host: &str) -> Result<HostPattern> {
    let host = host.trim();
    if host == "*" {
        return Ok(HostPattern::Any);
    }
    if host == "self" || host == "self.alt" {
        bail!(
            "requests to the app itself (`{host}`) are a Spin feature greeter-host does not implement"
        );
    }
    if host.starts_with('{') {
        bail!("host lists are not yet supported");
    }
    let unbracketed = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(net) = unbracketed.parse::<IpNet>() {
        return Ok(HostPattern::Network(net.trunc()));
    }
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(HostPattern::Network(IpNet::from(ip)));
    }
    let host = host.trim_end_matches('/');
    ensure!(!host.contains('/'), "must not include a path");
    if let Some(domain) = host.strip_prefix("*.") {
        ensure!(
            !domain.contains('*'),
            "wildcards are allowed only as prefixes"
        );
        return Ok(HostPattern::SubdomainsOf(format!(
            ".{}",
            domain.to_ascii_lowercase()
        )));
    }
    ensure!(
        !host.contains('*'),
        "wildcards are allowed only as subdomains"
    );
    match Host::parse(host)? {
        Host::Domain(name) => Ok(HostPattern::Name(name)),
        Host::Ipv4(ip) => Ok(HostPattern::Network(IpNet::from(IpAddr::from(ip)))),
        Host::Ipv6(ip) => Ok(HostPattern::Network(IpNet::from(IpAddr::from(ip)))),
    }
}

fn parse_ports(port: &str, scheme: &str) -> Result<Option<PortPattern>> {
    if port.is_empty() {
        let port = well_known_port(scheme).with_context(|| {
            format!("no port was provided and the scheme {scheme:?} does not have a known default port number")
        })?;
        return Ok(Some(PortPattern::One(port)));
    }
    if port == "*" {
        return Ok(None);
    }
    ensure!(!port.starts_with('{'), "port lists are not yet supported");
    if let Some((start, end)) = port.split_once("..") {
        let number = |text: &str| {
            text.parse::<u16>()
                .with_context(|| format!("port range {port:?} contains non-number"))
        };
        return Ok(Some(PortPattern::Range(number(start)?..number(end)?)));
    }
    let port = port
        .parse()
        .with_context(|| format!("port {port:?} is not a number"))?;
    Ok(Some(PortPattern::One(port)))
}

/// The outbound HTTP state of one instance: its component's grants, checked for each
/// request before wasmtime's client sends it.
pub struct OutboundHttpState {
    allowed: Arc<AllowedHosts>,
    observer: Arc<dyn Observer>,
    /// The parent of this capability's spans; the runtime sets it for each host call.
    pub request_span: RequestSpan,
}

impl OutboundHttpState {
    pub fn new(allowed: Arc<AllowedHosts>, observer: Arc<dyn Observer>) -> OutboundHttpState {
        OutboundHttpState {
            allowed,
            observer,
            request_span: RequestSpan::default(),
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundHttpState {
    fn send_request(
        &mut self,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        if !self.allowed.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), "outbound request denied: not in allowed_outbound_hosts");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        let observer = self.observer.clone();
        let server_address = request.uri().host().unwrap_or_default().to_string();
        let span = tracing::info_span!(
            parent: &self.request_span.get(),
            "spin_outbound_http.send_request",
            otel.kind = "client",
            otel.name = %request.method(),
            otel.status_code = tracing::field::Empty,
            http.request.method = %request.method(),
            url.full = %request.uri(),
            server.address = server_address.as_str(),
            server.port = request.uri().port_u16(),
            http.response.status_code = tracing::field::Empty,
        );
        propagate_trace(&span, &mut request);
        Box::new(
            async move {
                let started = Instant::now();
                let sent = send::send(request, options)
                    .await
                    .map_err(as_spin_reports_it);
                let status = sent
                    .as_ref()
                    .ok()
                    .map(|(response, _)| response.status().as_u16());
                let span = tracing::Span::current();
                match status {
                    Some(code) => span.record("http.response.status_code", code),
                    None => span.record("otel.status_code", "ERROR"),
                };
                observer.outbound_request(&server_address, status, started.elapsed());
                sent
            }
            .instrument(span),
        )
    }
}

/// The W3C `traceparent` of `span` on the outgoing request, as Spin sends it; nothing when
/// traces are off.
fn propagate_trace(span: &tracing::Span, request: &mut http::Request<WasiBody>) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(request.headers_mut()))
    });
}

/// Spin reports a name that does not resolve as `DNS-error` with rcode "address not
/// available" and info code 0, and a TLS name that is not a DNS name as "invalid dns name"
/// with info code 0; wasmtime's client leaves the info codes out. Every other error is
/// already the code Spin gives.
fn as_spin_reports_it(error: Error) -> Error {
    let dns_error = |rcode: &str| Error::DnsError {
        rcode: Some(rcode.to_string()),
        info_code: Some(0),
    };
    match &error {
        Error::InvalidDnsNameError(_) => dns_error("invalid dns name"),
        Error::Connect(io)
            if io.kind() == std::io::ErrorKind::AddrNotAvailable
                || io
                    .to_string()
                    .starts_with("failed to lookup address information") =>
        {
            tracing::debug!("outbound request: cannot resolve the host: {io}");
            dns_error("address not available")
        }
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], url: &str) -> bool {
        AllowedHosts::parse(entries)
            .unwrap()
            .allows(&url.parse().unwrap())
    }

    fn error_of(entry: &str) -> String {
        format!("{:#}", AllowedHosts::parse(&[entry]).unwrap_err())
    }

    #[test]
    fn exact_hosts_allow_their_scheme_and_default_port_only() {
        let entries = ["https://s3.example.com"];
        assert!(allows(&entries, "https://s3.example.com/bucket/key"));
        assert!(allows(&entries, "https://S3.Example.com:443/"));
        assert!(!allows(&entries, "http://s3.example.com/"));
        assert!(!allows(&entries, "https://s3.example.com:8443/"));
        assert!(!allows(&entries, "https://evil.com/"));
    }

    #[test]
    fn wildcards_cover_schemes_subdomains_and_ports() {
        assert!(allows(&["*://127.0.0.1:*"], "http://127.0.0.1:9000/"));
        assert!(allows(
            &["https://*.example.com"],
            "https://a.b.example.com/"
        ));
        assert!(!allows(&["https://*.example.com"], "https://example.com/"));
        assert!(allows(&["*://*:*"], "redis://anything:1/"));
    }

    #[test]
    fn port_ranges_are_spins_with_the_end_excluded() {
        let entries = ["http://localhost:9000..9010"];
        assert!(allows(&entries, "http://localhost:9000/"));
        assert!(allows(&entries, "http://localhost:9009/"));
        assert!(!allows(&entries, "http://localhost:9010/"));
        assert!(
            error_of("http://localhost:9000-9010").contains("port \"9000-9010\" is not a number")
        );
    }

    #[test]
    fn ipv6_literals_and_cidr_blocks_work() {
        let entries = ["http://[2001:db8::1]:8080"];
        assert!(allows(&entries, "http://[2001:db8::1]:8080/x"));
        assert!(allows(&entries, "http://[2001:DB8:0::1]:8080/"));
        assert!(!allows(&entries, "http://[2001:db8::2]:8080/"));
        assert!(allows(&["http://[::1]"], "http://[::1]/"));
        assert!(!allows(&["http://[::1]"], "http://[::1]:81/"));
        assert!(allows(&["https://10.0.0.0/8:*"], "https://10.1.2.3:9443/"));
        assert!(!allows(&["https://10.0.0.0/8:*"], "https://11.0.0.1/"));
        assert!(allows(&["http://127.0.0.1:9000"], "http://127.0.0.1:9000/"));
        assert!(!allows(
            &["http://127.0.0.1:9000"],
            "http://localhost:9000/"
        ));
    }

    #[test]
    fn default_ports_are_spins() {
        assert!(allows(&["redis://cache"], "redis://cache:6379"));
        assert!(error_of("ftp://files").contains(
            "no port was provided and the scheme \"ftp\" does not have a known default port number"
        ));
    }

    #[test]
    fn connection_errors_carry_spins_codes() {
        let unresolved = std::io::Error::other("failed to lookup address information: nope");
        assert!(matches!(
            as_spin_reports_it(Error::Connect(unresolved)),
            Error::DnsError { rcode: Some(r), info_code: Some(0) } if r == "address not available"
        ));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            as_spin_reports_it(Error::Connect(refused)),
            Error::Connect(_)
        ));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!allows(&[], "https://example.com/"));
    }

    #[test]
    fn malformed_entries_are_refused_with_spins_messages() {
        assert!(error_of("example.com").contains("does not contain a scheme"));
        assert!(error_of("*").contains("is not an allowed outbound host format"));
        assert!(error_of("https://a.com:443/path").contains("has a path but is not allowed to"));
        assert!(error_of("https://a.com/path").contains("must not include a path"));
        assert!(error_of("https://a*.com").contains("wildcards are allowed only as subdomains"));
        assert!(error_of("http://a.com:x").contains("Invalid allowed host port \"x\""));
        assert!(error_of("ht-tp://a.com:80").contains("only alphabetic characters are allowed"));
        assert!(error_of("http://self").contains("does not implement"));
        assert!(
            format!(
                "{:#}",
                AllowedHosts::parse(&["insecure:allow-all"]).unwrap_err()
            )
            .contains("use '*://*:*' instead")
        );
    }
}
