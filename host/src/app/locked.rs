//! Spin's locked app (`spin.lock`, and the application layer of a registry artifact): the
//! resolved application, in Spin's JSON format field for field, so an artifact greeter-host
//! pushes is one Spin runs and the other way round. A local manifest is locked first
//! ([`super::manifest`]); every app then becomes an [`App`] here, checked the same way
//! whichever source it came from.
//!
//! The format is Spin's `spin-locked-app` crate as of Spin 3.3 to 3.6: fields in its order,
//! empty ones left out, object keys sorted (Spin's `serde_json` keeps maps sorted), inline
//! content in base64 without padding.

use super::{App, ComponentDecl, HttpTrigger, VariableDecl};
use crate::capabilities::variables::{Template, check_name};
use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The `content_type` of every component source Spin writes.
pub const WASM_CONTENT_TYPE: &str = "application/wasm";

/// The only trigger type greeter-host serves.
pub const HTTP_TRIGGER: &str = "http";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedApp {
    /// 0 unless the app names features a host must understand (then 1); Spin reads up to 1.
    #[serde(deserialize_with = "lock_version")]
    pub spin_lock_version: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub must_understand: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_requirements: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, LockedVariable>,
    pub triggers: Vec<LockedTrigger>,
    pub components: Vec<LockedComponent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedVariable {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// None: the variable is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedTrigger {
    pub id: String,
    pub trigger_type: String,
    pub trigger_config: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedComponent {
    pub id: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    pub source: LockedSource,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dependencies: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub host_requirements: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockedSource {
    pub content_type: String,
    #[serde(flatten)]
    pub content: ContentRef,
}

/// Where content is: a URL (`file://` once local), inline bytes, a digest; at least one.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ContentRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "inline_out",
        deserialize_with = "inline_in"
    )]
    pub inline: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

fn lock_version<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let version = u64::deserialize(deserializer)?;
    if version > 1 {
        return Err(serde::de::Error::custom(format!(
            "invalid version {version} > 1"
        )));
    }
    Ok(version)
}

fn inline_out<S: Serializer>(bytes: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
    match bytes {
        Some(bytes) => serializer.serialize_str(&STANDARD_NO_PAD.encode(bytes)),
        None => serializer.serialize_none(),
    }
}

fn inline_in<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
    let text = String::deserialize(deserializer)?;
    STANDARD_NO_PAD
        .decode(text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

impl LockedApp {
    /// Spin's compact JSON: the bytes of an artifact's application layer.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a locked app serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Result<LockedApp> {
        serde_json::from_slice(bytes).context("failed to decode locked app")
    }

    /// The app greeter-host runs, each component's source a local `file://` URL. Checked as
    /// Spin checks a locked app, plus the limits of this host: HTTP triggers only, no file
    /// mounts, dependencies or host requirements.
    pub fn to_app(&self) -> Result<App> {
        let unknown: Vec<&String> = self
            .must_understand
            .iter()
            .filter(|item| {
                !["host_requirements", "component_host_requirements"].contains(&item.as_str())
            })
            .collect();
        if !unknown.is_empty() {
            bail!("unknown variant {:?} in must_understand", unknown[0]);
        }
        check_host_requirements(&self.host_requirements)?;
        let name = self
            .metadata
            .get("name")
            .and_then(Value::as_str)
            .context("the locked app has no metadata.name")?
            .to_string();
        let version = metadata_str(&self.metadata, "version").unwrap_or_default();
        let mut variables = BTreeMap::new();
        for (name, variable) in &self.variables {
            check_name(name).map_err(|reason| anyhow!("invalid variable name {reason}"))?;
            variables.insert(
                name.clone(),
                VariableDecl {
                    default: variable.default.clone(),
                    required: variable.default.is_none(),
                    secret: variable.secret,
                    description: variable.description.clone(),
                },
            );
        }
        let mut components = BTreeMap::new();
        for component in &self.components {
            let decl = component
                .to_decl(&variables)
                .with_context(|| format!("component {:?}", component.id))?;
            components.insert(component.id.clone(), decl);
        }
        let mut http_triggers = Vec::new();
        for trigger in &self.triggers {
            if trigger.trigger_type != HTTP_TRIGGER {
                bail!(
                    "trigger {:?}: greeter-host serves only HTTP triggers, not {:?}",
                    trigger.id,
                    trigger.trigger_type
                );
            }
            let http = http_trigger(&trigger.trigger_config)
                .with_context(|| format!("trigger {:?}", trigger.id))?;
            if !components.contains_key(&http.component) {
                bail!(
                    "trigger {:?} names component {:?}, which the app does not have",
                    trigger.id,
                    http.component
                );
            }
            http_triggers.push(http);
        }
        Ok(App {
            name,
            version,
            variables,
            http_triggers,
            components,
        })
    }
}

/// Spin drops requirements marked `optional`; this host can meet none of the others (Spin's
/// one, `local_service_chaining`, included), and says so in Spin's words.
fn check_host_requirements(requirements: &BTreeMap<String, Value>) -> Result<()> {
    let unmet: Vec<&str> = requirements
        .iter()
        .filter(|(_, value)| value.as_str() != Some("optional"))
        .map(|(key, _)| key.as_str())
        .collect();
    if !unmet.is_empty() {
        bail!(
            "This version of greeter-host does not support the following features required by this application: {}",
            unmet.join(", ")
        );
    }
    Ok(())
}

fn metadata_str(metadata: &BTreeMap<String, Value>, key: &str) -> Option<String> {
    metadata
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn metadata_strings(metadata: &BTreeMap<String, Value>, key: &str) -> Result<Vec<String>> {
    match metadata.get(key) {
        None => Ok(Vec::new()),
        Some(value) => serde_json::from_value(value.clone())
            .with_context(|| format!("metadata.{key} must be a list of strings")),
    }
}

/// `{"component": id, "route": "/..." | {"private": true}, "executor"?: {...}}`
fn http_trigger(config: &Value) -> Result<HttpTrigger> {
    let component = config
        .get("component")
        .and_then(Value::as_str)
        .context("`component` must name a component (inline components are not supported)")?
        .to_string();
    if let Some(executor) = config.get("executor")
        && executor.get("type").and_then(Value::as_str) != Some("spin")
    {
        bail!("`executor`: only the default Spin executor is supported");
    }
    let route = match config.get("route") {
        Some(Value::String(route)) => Some(route.clone()),
        Some(route) if route.get("private") == Some(&Value::Bool(true)) => None,
        Some(Value::Object(_)) => {
            bail!("`route`: `{{ private = false }}` is not a route; give a path")
        }
        _ => bail!("`route` must be a path or `{{ private = true }}`"),
    };
    Ok(HttpTrigger { route, component })
}

impl LockedComponent {
    fn to_decl(&self, app_variables: &BTreeMap<String, VariableDecl>) -> Result<ComponentDecl> {
        check_host_requirements(&self.host_requirements)?;
        if !self.files.is_empty() {
            bail!("`files` is a Spin feature greeter-host does not implement");
        }
        if !self.dependencies.is_empty() {
            bail!("`dependencies` is a Spin feature greeter-host does not implement");
        }
        let source = self.source.local_path()?;
        let allowed_outbound_hosts = metadata_strings(&self.metadata, "allowed_outbound_hosts")?;
        let declared = |name: &str| app_variables.contains_key(name);
        for (name, template) in &self.config {
            check_name(name).map_err(|reason| anyhow!("invalid variable name {reason}"))?;
            Template::parse(template)
                .and_then(|t| t.check_references(declared))
                .with_context(|| format!("`variables.{name}`"))?;
        }
        for (index, host) in allowed_outbound_hosts.iter().enumerate() {
            Template::parse(host)
                .and_then(|t| t.check_references(declared))
                .with_context(|| format!("`allowed_outbound_hosts[{index}]`"))?;
        }
        let build_command = match self.metadata.get("build").and_then(|b| b.get("command")) {
            Some(Value::String(command)) => Some(command.clone()),
            Some(Value::Array(commands)) => Some(
                commands
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" && "),
            ),
            _ => None,
        };
        Ok(ComponentDecl {
            source,
            key_value_stores: metadata_strings(&self.metadata, "key_value_stores")?,
            allowed_outbound_hosts,
            variables: self.config.clone(),
            environment: self.env.clone(),
            build_command,
        })
    }
}

impl LockedSource {
    /// The local file of a Wasm source.
    fn local_path(&self) -> Result<PathBuf> {
        if self.content_type != WASM_CONTENT_TYPE {
            bail!("unsupported source content type {:?}", self.content_type);
        }
        self.content.local_file()
    }
}

impl ContentRef {
    /// The file a `file://` source names.
    pub fn local_file(&self) -> Result<PathBuf> {
        let url = self
            .source
            .as_deref()
            .context("the source has no local file")?;
        url::Url::parse(url)
            .ok()
            .filter(|url| url.scheme() == "file")
            .and_then(|url| url.to_file_path().ok())
            .with_context(|| format!("the source {url:?} is not a local file"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Spin 3.6.3's loader writes for a one-component app, pushed (source rewritten to
    /// a digest, origin removed): from Spin's own crates, byte for byte.
    const SPIN_PUSHED: &str = r#"{"spin_lock_version":0,"metadata":{"authors":["Greeter developers"],"description":"Hello world","name":"greeter","trigger":{"type":"http"},"triggers":{},"version":"0.1.0"},"variables":{"api_token":{"description":"API token","secret":true},"s3_endpoint":{"default":"https://s3.us-east-1.amazonaws.com"}},"triggers":[{"id":"greeter-http-trigger","trigger_type":"http","trigger_config":{"component":"greeter","route":"/..."}}],"components":[{"id":"greeter","metadata":{"allowed_outbound_hosts":["{{ s3_endpoint }}"],"build":{"command":"cargo build --target wasm32-wasip2 --release -p greeter","watch":["component/src/**/*.rs","component/Cargo.toml"]},"description":"The Greeter HTTP API","key_value_stores":["default"]},"source":{"content_type":"application/wasm","digest":"sha256:66883e99950ce62db821554aef7545bc98726cf4bbc084863869d76f1e64f8d4"},"env":{"A_FIRST":"1","RUST_LOG":"info"},"config":{"s3_endpoint":"{{ s3_endpoint }}","token":"{{ api_token }}"}}]}"#;

    #[test]
    fn spins_json_round_trips_byte_for_byte() {
        let locked = LockedApp::from_json(SPIN_PUSHED.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(locked.to_json()).unwrap(), SPIN_PUSHED);
    }

    #[test]
    fn inline_content_is_base64_without_padding() {
        let content = ContentRef {
            inline: Some(b"hello\n".to_vec()),
            ..ContentRef::default()
        };
        let json = serde_json::to_string(&content).unwrap();
        assert_eq!(json, r#"{"inline":"aGVsbG8K"}"#);
        assert_eq!(serde_json::from_str::<ContentRef>(&json).unwrap(), content);
        assert!(serde_json::from_str::<ContentRef>(r#"{"inline":"aGVsbG8K=="}"#).is_err());
    }

    #[test]
    fn lock_versions_above_one_and_unmet_requirements_are_refused() {
        let newer = SPIN_PUSHED.replace("\"spin_lock_version\":0", "\"spin_lock_version\":2");
        let error = format!("{:#}", LockedApp::from_json(newer.as_bytes()).unwrap_err());
        assert!(error.contains("invalid version 2 > 1"), "{error}");
        let mut locked = LockedApp::from_json(SPIN_PUSHED.as_bytes()).unwrap();
        locked.host_requirements.insert(
            "local_service_chaining".into(),
            Value::String("required".into()),
        );
        let error = locked.to_app().unwrap_err().to_string();
        assert!(error.contains("local_service_chaining"), "{error}");
    }

    #[test]
    fn a_pulled_app_becomes_the_app_greeter_host_runs() {
        let mut locked = LockedApp::from_json(SPIN_PUSHED.as_bytes()).unwrap();
        let error = format!("{:#}", locked.to_app().unwrap_err());
        assert!(error.contains("the source has no local file"), "{error}");
        locked.components[0].source.content.source =
            Some("file:///cache/wasm/sha256:66883e".into());
        let app = locked.to_app().unwrap();
        assert_eq!(app.name, "greeter");
        assert_eq!(app.version, "0.1.0");
        assert!(app.variables["api_token"].required);
        let greeter = &app.components["greeter"];
        assert_eq!(greeter.source, PathBuf::from("/cache/wasm/sha256:66883e"));
        assert_eq!(greeter.key_value_stores, ["default"]);
        assert_eq!(greeter.environment["RUST_LOG"], "info");
        assert_eq!(
            app.http_triggers,
            [HttpTrigger {
                route: Some("/...".into()),
                component: "greeter".into()
            }]
        );
    }

    #[test]
    fn only_http_triggers_are_served() {
        let redis = SPIN_PUSHED.replace("\"trigger_type\":\"http\"", "\"trigger_type\":\"redis\"");
        let mut locked = LockedApp::from_json(redis.as_bytes()).unwrap();
        locked.components[0].source.content.source = Some("file:///x.wasm".into());
        let error = locked.to_app().unwrap_err().to_string();
        assert!(error.contains("only HTTP triggers"), "{error}");
    }
}
