//! The values the command line takes: durations, sizes, `KEY=VALUE` pairs, addresses.

use crate::runtime::Range;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// `host:port` as Spin reads `--listen`: a name may resolve to several addresses; the
/// loopback one is preferred, else the first.
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let addresses: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|error| format!("invalid address {text:?}: {error}"))?
        .collect();
    addresses
        .iter()
        .find(|address| address.ip() == std::net::Ipv4Addr::LOCALHOST)
        .or(addresses.first())
        .copied()
        .ok_or_else(|| format!("{text:?} resolves to no address"))
}

pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// `30s`, `500ms`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("invalid duration {text:?}: use ms, s or m")),
    }
}

/// A count, or a range of counts (`1..8`), as Spin's reuse flags take them.
pub fn parse_usize_range(text: &str) -> Result<Range<usize>, String> {
    Range::parse(text, |count| {
        count
            .parse()
            .map_err(|_| format!("{count:?} is not a whole number"))
    })
}

/// A duration, or a range of durations (`1..8s`, `100ms..2s`), as Spin's reuse flags take them;
/// a unit on the end only applies to both bounds.
pub fn parse_duration_range(text: &str) -> Result<Range<Duration>, String> {
    Range::parse(text, parse_duration)
}

/// `128MiB`, `64KiB`, `1GiB`, or a bare number of bytes.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    let scale = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("invalid size {text:?}: use B, KiB, MiB or GiB")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("128MiB"), Ok(128 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert!(parse_bytes("1MB").is_err());
        assert!(parse_bytes("99999999999999999999GiB").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address("0.0.0.0:80"),
            Ok("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(
            parse_listen_address("localhost:3000"),
            Ok("127.0.0.1:3000".parse().unwrap())
        );
        assert!(parse_listen_address("nowhere").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
    }
}
