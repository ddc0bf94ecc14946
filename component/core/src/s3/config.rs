//! Where the bucket is and how to sign for it: the component's `s3_*` Spin variables, and the
//! URLs they give.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::errors::{ApiError, ErrorCode};
use crate::platform::Variables;

/// Every S3 variable, in the order a 503 names the missing ones. spin.toml sets the bucket and
/// keys to "" (so those are what a fresh deployment misses) and gives the others usable
/// defaults (AWS's `us-east-1`, path style).
const VARIABLES: [&str; 6] = [
    "s3_bucket",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_endpoint",
    "s3_region",
    "s3_path_style",
];

/// Bytes a URL path segment or query value keeps as they are: RFC 3986's unreserved
/// characters, which is also how SigV4 encodes them.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// An object key in a path keeps its `/` too.
const KEY: &AsciiSet = &UNRESERVED.remove(b'/');

/// A usable S3 configuration. (No `Debug`: it holds the secret key.)
pub struct S3Config {
    /// `http` or `https`.
    scheme: String,
    /// `host[:port]`, lowercase.
    authority: String,
    /// The endpoint's path, without a trailing `/` (usually empty).
    base_path: String,
    pub bucket: String,
    pub region: String,
    path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Config {
    /// Reads the variables, trimmed (a Kubernetes Secret often ends with a newline). A missing
    /// or empty one, or one that makes no sense, is a 503 `not_configured` that names it and
    /// never shows a key.
    pub async fn from_variables(variables: &dyn Variables) -> Result<Self, ApiError> {
        let mut values = [const { None }; VARIABLES.len()];
        for (value, name) in values.iter_mut().zip(VARIABLES) {
            *value = variables
                .get(name)
                .await
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty());
        }
        let missing: Vec<&str> = VARIABLES
            .iter()
            .zip(&values)
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| *name)
            .collect();
        if let Some(first) = missing.first() {
            let plural = if missing.len() == 1 { "" } else { "s" };
            return Err(not_configured(format!(
                "S3 is not configured: set the Spin variable{plural} {} (e.g. SPIN_VARIABLE_{}).",
                missing.join(", "),
                first.to_ascii_uppercase()
            )));
        }
        let [
            bucket,
            access_key_id,
            secret_access_key,
            endpoint,
            region,
            path_style,
        ] = values.map(Option::unwrap_or_default);
        let path_style = match path_style.as_str() {
            "true" => true,
            "false" => false,
            other => {
                return Err(not_configured(format!(
                    "S3 is misconfigured: s3_path_style must be `true` or `false`, not `{other}`."
                )));
            }
        };
        let (scheme, authority, base_path) = parse_endpoint(&endpoint).ok_or_else(|| {
            not_configured(format!(
                "S3 is misconfigured: s3_endpoint must be an http:// or https:// URL like https://s3.us-east-1.amazonaws.com, not `{endpoint}`."
            ))
        })?;
        if !path_style && !fits_in_a_host_name(&bucket, &authority) {
            return Err(not_configured(format!(
                "S3 is misconfigured: with s3_path_style = false the bucket `{bucket}` would be part of the host name {bucket}.{authority}, which cannot be (an IP address, or a bucket name with other than a-z, 0-9, `-` and `.`); use path style."
            )));
        }
        Ok(Self {
            scheme,
            authority,
            base_path,
            bucket,
            region,
            path_style,
            access_key_id,
            secret_access_key,
        })
    }

    /// The bucket's URL, without a trailing `/`: `{endpoint}/{bucket}` in path style,
    /// `{scheme}://{bucket}.{host}` virtual-hosted.
    pub fn bucket_url(&self) -> String {
        let Self {
            scheme,
            authority,
            base_path,
            bucket,
            ..
        } = self;
        match self.path_style {
            true => format!(
                "{scheme}://{authority}{base_path}/{}",
                utf8_percent_encode(bucket, UNRESERVED)
            ),
            false => format!("{scheme}://{bucket}.{authority}{base_path}"),
        }
    }

    /// `scheme://host[:port]` of the bucket's URLs: where requests go.
    pub fn origin(&self) -> String {
        match self.path_style {
            true => format!("{}://{}", self.scheme, self.authority),
            false => format!("{}://{}.{}", self.scheme, self.bucket, self.authority),
        }
    }

    /// The URL of the object `key`, each byte but `/` and the unreserved ones percent-encoded.
    pub fn object_url(&self, key: &str) -> String {
        format!("{}/{}", self.bucket_url(), utf8_percent_encode(key, KEY))
    }
}

/// A query string from `pairs`, names and values percent-encoded as SigV4 does.
pub fn query_string(pairs: &[(&str, &str)]) -> String {
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(name, value)| {
            format!(
                "{}={}",
                utf8_percent_encode(name, UNRESERVED),
                utf8_percent_encode(value, UNRESERVED)
            )
        })
        .collect();
    encoded.join("&")
}

/// (scheme, `host[:port]`, path without a trailing `/`) of `http[s]://host[:port][/path]`,
/// read with the `http` crate's URI parser (so `[2001:db8::1]:8080` works); `None` for
/// anything else (user info, a query, no host). The scheme's default port is dropped: the
/// `Host` header goes out as written here, and S3 signs it without one.
fn parse_endpoint(endpoint: &str) -> Option<(String, String, String)> {
    let uri: http::Uri = endpoint.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let plain = scheme == "http" || scheme == "https";
    if !plain || authority.host().is_empty() || authority.as_str().contains('@') {
        return None;
    }
    if uri.query().is_some() || endpoint.ends_with('?') {
        return None;
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let authority = if authority.port_u16() == Some(default_port) {
        authority.host()
    } else {
        authority.as_str()
    };
    Some((
        scheme,
        authority.to_ascii_lowercase(),
        uri.path().trim_end_matches('/').to_owned(),
    ))
}

/// Whether `{bucket}.{host}` is a host name: the bucket is S3's DNS-compatible name and the
/// endpoint's host is a name, not an IP address.
fn fits_in_a_host_name(bucket: &str, authority: &str) -> bool {
    let host = authority
        .parse::<http::uri::Authority>()
        .map_or(String::new(), |a| a.host().to_owned());
    let is_ip = host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok();
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    !host.is_empty() && !is_ip && bucket_ok
}

fn not_configured(message: String) -> ApiError {
    ApiError::new(ErrorCode::NotConfigured, message)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{S3Config, query_string};
    use crate::errors::ErrorCode;
    use crate::fakes::block_on;

    fn variables(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut map: HashMap<String, String> = [
            ("s3_endpoint", "http://127.0.0.1:9000"),
            ("s3_region", "eu-west-1"),
            ("s3_bucket", "uploads"),
            ("s3_path_style", "true"),
            ("s3_access_key_id", "AKIDEXAMPLE"),
            ("s3_secret_access_key", "very-secret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (name, value) in pairs {
            map.insert((*name).to_owned(), (*value).to_owned());
        }
        map
    }

    fn config(pairs: &[(&str, &str)]) -> S3Config {
        match block_on(S3Config::from_variables(&variables(pairs))) {
            Ok(config) => config,
            Err(error) => panic!("{}", error.message),
        }
    }

    fn message(pairs: &[(&str, &str)]) -> String {
        let Err(error) = block_on(S3Config::from_variables(&variables(pairs))) else {
            panic!("{pairs:?} was accepted");
        };
        assert_eq!(error.code, ErrorCode::NotConfigured);
        assert!(!error.message.contains("very-secret"), "{}", error.message);
        error.message
    }

    #[test]
    fn path_style_puts_the_bucket_in_the_path() {
        let config = config(&[]);
        assert_eq!(config.bucket_url(), "http://127.0.0.1:9000/uploads");
        assert_eq!(config.origin(), "http://127.0.0.1:9000");
        assert_eq!(
            config.object_url("random/2026-11-22/a b+c~ü.bin"),
            "http://127.0.0.1:9000/uploads/random/2026-11-22/a%20b%2Bc~%C3%BC.bin"
        );
        assert_eq!(config.region, "eu-west-1");
        assert_eq!(config.access_key_id, "AKIDEXAMPLE");
    }

    #[test]
    fn virtual_hosted_style_puts_it_in_the_host_name() {
        let config = config(&[
            ("s3_endpoint", "https://S3.eu-west-1.amazonaws.com/"),
            ("s3_path_style", "false"),
        ]);
        assert_eq!(
            config.object_url("k"),
            "https://uploads.s3.eu-west-1.amazonaws.com/k"
        );
        assert_eq!(
            config.origin(),
            "https://uploads.s3.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn an_endpoint_path_prefixes_every_url() {
        let config = config(&[("s3_endpoint", "https://gateway.example:8443/storage/")]);
        assert_eq!(
            config.object_url("k"),
            "https://gateway.example:8443/storage/uploads/k"
        );
    }

    #[test]
    fn the_schemes_default_port_is_left_out_as_s3_signs_the_host() {
        for (endpoint, origin) in [
            ("https://s3.amazonaws.com:443", "https://s3.amazonaws.com"),
            ("http://minio.example:80/", "http://minio.example"),
            ("http://minio.example:443", "http://minio.example:443"),
            ("http://[::1]:80", "http://[::1]"),
        ] {
            assert_eq!(config(&[("s3_endpoint", endpoint)]).origin(), origin);
        }
    }

    #[test]
    fn values_are_trimmed() {
        let config = config(&[
            ("s3_secret_access_key", "very-secret\n"),
            ("s3_path_style", " true "),
        ]);
        assert_eq!(config.secret_access_key, "very-secret");
    }

    #[test]
    fn empty_variables_are_named() {
        assert_eq!(
            message(&[("s3_region", " "), ("s3_endpoint", "")]),
            "S3 is not configured: set the Spin variables s3_endpoint, s3_region (e.g. SPIN_VARIABLE_S3_ENDPOINT)."
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_variable_name() {
        assert_eq!(
            message(&[("s3_path_style", "yes")]),
            "S3 is misconfigured: s3_path_style must be `true` or `false`, not `yes`."
        );
        for endpoint in [
            "s3.amazonaws.com",
            "ftp://example.com",
            "https://",
            "https://:9000",
            "https://user:pw@example.com",
            "https://example.com/?x=1",
            "https://exa mple.com",
            "https://a:b:c",
        ] {
            assert!(
                message(&[("s3_endpoint", endpoint)]).contains("s3_endpoint must be"),
                "{endpoint}"
            );
        }
        for (endpoint, bucket) in [
            ("http://127.0.0.1:9000", "uploads"),
            ("http://[::1]:9000", "uploads"),
            ("https://s3.amazonaws.com", "Uploads"),
            ("https://s3.amazonaws.com", "up_loads"),
            ("https://s3.amazonaws.com", "-uploads"),
        ] {
            let message = message(&[
                ("s3_endpoint", endpoint),
                ("s3_bucket", bucket),
                ("s3_path_style", "false"),
            ]);
            assert!(message.contains("use path style"), "{endpoint} {bucket}");
        }
    }

    #[test]
    fn ipv6_endpoints_work_in_path_style() {
        assert_eq!(
            config(&[("s3_endpoint", "http://[::1]:9000")]).bucket_url(),
            "http://[::1]:9000/uploads"
        );
        assert_eq!(
            config(&[("s3_endpoint", "http://[2001:db8::1]:8080/s3")]).object_url("k"),
            "http://[2001:db8::1]:8080/s3/uploads/k"
        );
    }

    #[test]
    fn query_strings_encode_everything_but_unreserved_bytes() {
        assert_eq!(
            query_string(&[("prefix", "random/"), ("continuation-token", "a+b c=~")]),
            "prefix=random%2F&continuation-token=a%2Bb%20c%3D~"
        );
    }
}
