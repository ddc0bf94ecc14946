//! The values the command line takes: durations, sizes, `KEY=VALUE` pairs, addresses,
//! variable sources.

use crate::runtime::Range;
use anyhow::{Context, Result};
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
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

/// Where `--variable` takes values from, as Spin reads it: `name=value`, `name=@file` (the
/// file's text), or `@file.json` / `@file.toml` (a table of names and string values).
#[derive(Debug, Clone, PartialEq)]
pub enum VariableSource {
    Literal(String, String),
    FileContent(String, PathBuf),
    JsonFile(PathBuf),
    TomlFile(PathBuf),
}

/// Spin's forms and wording.
pub fn parse_variable_source(text: &str) -> Result<VariableSource, String> {
    if let Some(path) = text.strip_prefix('@') {
        let path = PathBuf::from(path);
        return match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Ok(VariableSource::JsonFile(path)),
            Some("toml") => Ok(VariableSource::TomlFile(path)),
            _ => Err("variable files must end in .json or .toml".into()),
        };
    }
    match text.split_once('=') {
        Some((name, value)) => Ok(match value.strip_prefix('@') {
            Some(path) => VariableSource::FileContent(name.into(), path.into()),
            None => VariableSource::Literal(name.into(), value.into()),
        }),
        None => Err("variables must be in the form 'key=value' or '@file'".into()),
    }
}

/// The values of `sources`, read in order: a later value of a name replaces an earlier one.
pub fn read_variables(sources: &[VariableSource]) -> Result<BTreeMap<String, String>> {
    let read = |path: &PathBuf| {
        std::fs::read_to_string(path).with_context(|| format!("Failed to read {path:?}."))
    };
    let mut values = BTreeMap::new();
    for source in sources {
        match source {
            VariableSource::Literal(name, value) => {
                values.insert(name.clone(), value.clone());
            }
            VariableSource::FileContent(name, path) => {
                values.insert(name.clone(), read(path)?);
            }
            VariableSource::JsonFile(path) => {
                let table: HashMap<String, String> = serde_json::from_str(&read(path)?)
                    .with_context(|| format!("Failed to parse JSON from {path:?}."))?;
                values.extend(table);
            }
            VariableSource::TomlFile(path) => {
                let table: HashMap<String, String> = toml::from_str(&read(path)?)
                    .with_context(|| format!("Failed to parse TOML from {path:?}."))?;
                values.extend(table);
            }
        }
    }
    Ok(values)
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

    #[test]
    fn variables_come_from_the_command_line_and_files_in_spins_forms() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            format!("{}", path.display())
        };
        let token = file("token.txt", "s3cret\n");
        let json = file(
            "vars.json",
            r#"{"bucket": "from-json", "region": "eu-west-1"}"#,
        );
        let toml = file("vars.toml", "bucket = \"from-toml\"\n");
        let sources: Vec<VariableSource> = [
            "bucket=literal".to_owned(),
            format!("token=@{token}"),
            format!("@{json}"),
            format!("@{toml}"),
            "empty=".to_owned(),
        ]
        .iter()
        .map(|text| parse_variable_source(text).unwrap())
        .collect();
        let values = read_variables(&sources).unwrap();
        let expected = [
            ("bucket", "from-toml"),
            ("empty", ""),
            ("region", "eu-west-1"),
            ("token", "s3cret\n"),
        ];
        let expected: BTreeMap<String, String> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(values, expected);
        assert_eq!(
            parse_variable_source("nope"),
            Err("variables must be in the form 'key=value' or '@file'".into())
        );
        assert_eq!(
            parse_variable_source("@vars.yaml"),
            Err("variable files must end in .json or .toml".into())
        );
        let missing = parse_variable_source("@/nonexistent/vars.json").unwrap();
        assert!(read_variables(&[missing]).is_err());
        let bad = parse_variable_source(&format!("@{}", file("bad.json", "[1]"))).unwrap();
        assert!(read_variables(&[bad]).is_err());
    }
}
