//! Outbound HTTP: a component may reach only the hosts its manifest lists in
//! `allowed_outbound_hosts`; anything else fails with `HTTP-request-denied`, as in Spin.
//!
//! Entry syntax (Spin's): `scheme://host[:port]`, where the scheme may be `*`, the host may
//! be `*` or `*.domain`, and the port may be a number, a range `8000-8999` or `*`. Without a
//! port an entry allows the scheme's default port.

use anyhow::{Result, bail};
use http_body_util::BodyExt;
use std::sync::Arc;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The parsed `allowed_outbound_hosts` of one component.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AllowedHosts(Vec<AllowedHost>);

#[derive(Debug, Clone, PartialEq)]
struct AllowedHost {
    /// `None` for `*`.
    scheme: Option<String>,
    host: HostPattern,
    ports: PortPattern,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    /// `*.example.com`: any subdomain, not the domain itself.
    SubdomainsOf(String),
    Exact(String),
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    Any,
    Range(u16, u16),
}

impl AllowedHosts {
    /// Parses rendered entries (variable templates already applied).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowedHosts> {
        entries
            .iter()
            .map(|e| AllowedHost::parse(e.as_ref()))
            .collect::<Result<_>>()
            .map(AllowedHosts)
    }

    pub fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let Some(port) = uri.port_u16().or_else(|| default_port(scheme)) else {
            return false;
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        self.0
            .iter()
            .any(|allowed| allowed.allows(scheme, &host, port))
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl AllowedHost {
    fn parse(entry: &str) -> Result<AllowedHost> {
        let Some((scheme, rest)) = entry.split_once("://") else {
            bail!("allowed outbound host {entry:?} needs a scheme, e.g. `https://{entry}`");
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains('/') {
            bail!("allowed outbound host {entry:?} must be `scheme://host[:port]`, without a path");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(':') => (host, Some(port)),
            _ => (authority, None),
        };
        let ports = match port {
            Some("*") => PortPattern::Any,
            Some(port) => match port.split_once('-') {
                Some((low, high)) => {
                    PortPattern::Range(parse_port(entry, low)?, parse_port(entry, high)?)
                }
                None => {
                    let port = parse_port(entry, port)?;
                    PortPattern::Range(port, port)
                }
            },
            None => match default_port(scheme) {
                Some(port) => PortPattern::Range(port, port),
                None => bail!(
                    "allowed outbound host {entry:?}: scheme `{scheme}` has no default port; add one"
                ),
            },
        };
        let host = host.to_ascii_lowercase();
        let host = match host.as_str() {
            "*" => HostPattern::Any,
            _ if host.starts_with("*.") => HostPattern::SubdomainsOf(host[1..].to_string()),
            _ if host.is_empty() || host.contains('*') => {
                bail!(
                    "allowed outbound host {entry:?}: `*` may only stand for the whole host or a leading subdomain"
                )
            }
            _ => HostPattern::Exact(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
            ),
        };
        let scheme = (scheme != "*").then(|| scheme.to_ascii_lowercase());
        Ok(AllowedHost {
            scheme,
            host,
            ports,
        })
    }

    fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme.as_deref().is_none_or(|s| s == scheme);
        let host_ok = match &self.host {
            HostPattern::Any => true,
            HostPattern::SubdomainsOf(suffix) => host.ends_with(suffix.as_str()),
            HostPattern::Exact(exact) => exact == host,
        };
        let port_ok = match self.ports {
            PortPattern::Any => true,
            PortPattern::Range(low, high) => (low..=high).contains(&port),
        };
        scheme_ok && host_ok && port_ok
    }
}

fn parse_port(entry: &str, port: &str) -> Result<u16> {
    port.parse()
        .map_err(|_| anyhow::anyhow!("allowed outbound host {entry:?}: invalid port {port:?}"))
}

/// wasi-http hooks of one instance: checks each outgoing request against the component's
/// allowed hosts before wasmtime's default client sends it.
pub struct OutboundHooks {
    pub allowed: Arc<AllowedHosts>,
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

impl WasiHttpHooks for OutboundHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _response_errors: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        if !self.allowed.allows(request.uri()) {
            tracing::warn!(uri = %request.uri(), "outbound request denied: not in allowed_outbound_hosts");
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        Box::new(async move {
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
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
        assert!(allows(
            &["http://localhost:9000-9010"],
            "http://localhost:9005/"
        ));
        assert!(!allows(
            &["http://localhost:9000-9010"],
            "http://localhost:9011/"
        ));
        assert!(allows(&["http://[::1]:80"], "http://[::1]/"));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!allows(&[], "https://example.com/"));
    }

    #[test]
    fn malformed_entries_are_refused() {
        for bad in [
            "example.com",
            "https://",
            "https://a.com/path",
            "https://a*.com",
            "redis://a.com",
            "http://a.com:x",
        ] {
            assert!(AllowedHosts::parse(&[bad]).is_err(), "{bad}");
        }
    }
}
