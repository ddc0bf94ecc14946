//! `spin.toml` (Spin manifest version 2): parsed strictly, validated once at start-up.
//!
//! The serde types mirror Spin's manifest schema and reject unknown fields, as Spin does, so
//! a typo fails loudly with the field's name and position. Fields Spin knows but this host
//! does not implement (file mounts, SQLite databases, AI models...) are refused by name
//! instead of being silently ignored.

use crate::capabilities::variables::{Template, check_name};
use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The application as the rest of the host sees it: validated, paths resolved.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub version: String,
    /// The directory of `spin.toml`: component sources are relative to it.
    pub dir: PathBuf,
    pub variables: BTreeMap<String, VariableDecl>,
    pub http_triggers: Vec<HttpTrigger>,
    pub components: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VariableDecl {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpTrigger {
    /// `None` for a private route (`route = { private = true }`): reachable by no request.
    pub route: Option<String>,
    pub component: String,
}

#[derive(Debug, Clone)]
pub struct ComponentDecl {
    pub source: PathBuf,
    pub key_value_stores: Vec<String>,
    pub allowed_outbound_hosts: Vec<String>,
    /// Component variable templates, e.g. `bucket = "{{ s3_bucket }}"`.
    pub variables: BTreeMap<String, String>,
    /// WASI environment variables.
    pub environment: BTreeMap<String, String>,
    /// The `[component.<id>.build]` command, quoted when the source is missing.
    pub build_command: Option<String>,
}

impl App {
    pub fn load(path: &Path) -> Result<App> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the manifest {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
        App::parse(&text, &dir).with_context(|| format!("invalid manifest {}", path.display()))
    }

    pub fn parse(text: &str, dir: &Path) -> Result<App> {
        let version: ManifestVersion = toml::from_str(text)?;
        if version.spin_manifest_version != 2 {
            bail!(
                "spin_manifest_version = {}: only manifest version 2 is supported",
                version.spin_manifest_version
            );
        }
        let raw: RawManifest = toml::from_str(text)?;
        raw.validate(dir)
    }
}

#[derive(Deserialize)]
struct ManifestVersion {
    spin_manifest_version: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[allow(
        dead_code,
        reason = "checked by ManifestVersion; declared so it is not unknown"
    )]
    spin_manifest_version: i64,
    application: RawApplication,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: String,
    #[allow(
        dead_code,
        reason = "metadata Spin accepts; the host has no use for it"
    )]
    #[serde(default)]
    description: String,
    #[allow(
        dead_code,
        reason = "metadata Spin accepts; the host has no use for it"
    )]
    #[serde(default)]
    authors: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpTrigger>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpTrigger {
    #[allow(dead_code, reason = "optional trigger id Spin accepts")]
    id: Option<String>,
    route: RawRoute,
    component: toml::Value,
    executor: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawRoute {
    Path(String),
    Private { private: bool },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
    #[allow(
        dead_code,
        reason = "metadata Spin accepts; the host has no use for it"
    )]
    description: Option<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    build: Option<RawBuild>,
    /// Settings for other tools (e.g. `spin-test`); Spin ignores them and so do we.
    #[allow(dead_code, reason = "tool-specific settings are ignored by design")]
    tool: Option<toml::Table>,
    // Known to Spin, not implemented here: refused with a clear message when used.
    files: Option<toml::Value>,
    exclude_files: Option<toml::Value>,
    sqlite_databases: Option<toml::Value>,
    ai_models: Option<toml::Value>,
    dependencies: Option<toml::Value>,
    dependencies_inherit_configuration: Option<toml::Value>,
    allowed_http_hosts: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuild {
    command: toml::Value,
    #[allow(dead_code, reason = "used by `spin build`, not by the host")]
    workdir: Option<String>,
    #[allow(dead_code, reason = "used by `spin watch`, not by the host")]
    watch: Option<Vec<String>>,
    #[allow(dead_code, reason = "used by `spin build`, not by the host")]
    environment: Option<BTreeMap<String, String>>,
}

impl RawManifest {
    fn validate(self, dir: &Path) -> Result<App> {
        for (name, decl) in &self.variables {
            check_variable_name(name).with_context(|| format!("[variables.{name}]"))?;
            if decl.required && decl.default.is_some() {
                bail!(
                    "[variables.{name}]: a variable cannot be both `required` and have a `default`"
                );
            }
            if !decl.required && decl.default.is_none() {
                bail!("[variables.{name}]: give it a `default` or mark it `required = true`");
            }
        }

        let mut components = BTreeMap::new();
        for (id, raw) in self.component {
            check_component_id(&id)?;
            let decl = raw
                .validate(dir, &self.variables)
                .with_context(|| format!("[component.{id}]"))?;
            components.insert(id, decl);
        }

        let mut http_triggers = Vec::new();
        for (index, raw) in self.trigger.http.into_iter().enumerate() {
            let trigger = raw
                .validate(&components)
                .with_context(|| format!("[[trigger.http]] number {}", index + 1))?;
            http_triggers.push(trigger);
        }

        Ok(App {
            name: self.application.name,
            version: self.application.version,
            dir: dir.to_path_buf(),
            variables: self.variables,
            http_triggers,
            components,
        })
    }
}

impl RawComponent {
    fn validate(
        self,
        dir: &Path,
        app_variables: &BTreeMap<String, VariableDecl>,
    ) -> Result<ComponentDecl> {
        let unsupported = [
            ("files", self.files.is_some()),
            ("exclude_files", self.exclude_files.is_some()),
            ("sqlite_databases", self.sqlite_databases.is_some()),
            ("ai_models", self.ai_models.is_some()),
            ("dependencies", self.dependencies.is_some()),
            (
                "dependencies_inherit_configuration",
                self.dependencies_inherit_configuration.is_some(),
            ),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, used)| *used) {
            bail!("`{field}` is a Spin feature greeter-host does not implement");
        }
        if self.allowed_http_hosts.is_some() {
            bail!(
                "`allowed_http_hosts` is not part of manifest version 2: use `allowed_outbound_hosts`"
            );
        }
        let source = match self.source {
            toml::Value::String(path) => dir.join(path),
            toml::Value::Table(_) => {
                bail!("`source`: only a local file path is supported, not a URL or registry source")
            }
            other => bail!("`source` must be a file path, not {}", other.type_str()),
        };
        for name in self.variables.keys() {
            check_variable_name(name).with_context(|| format!("`variables.{name}`"))?;
        }
        let declared = |name: &str| app_variables.contains_key(name);
        for (name, template) in &self.variables {
            Template::parse(template)
                .and_then(|t| t.check_references(declared))
                .with_context(|| format!("`variables.{name}`"))?;
        }
        for (index, host) in self.allowed_outbound_hosts.iter().enumerate() {
            Template::parse(host)
                .and_then(|t| t.check_references(declared))
                .with_context(|| format!("`allowed_outbound_hosts[{index}]`"))?;
        }
        let build_command = match self.build.map(|b| b.command) {
            None => None,
            Some(toml::Value::String(command)) => Some(command),
            Some(toml::Value::Array(commands)) => Some(
                commands
                    .iter()
                    .filter_map(toml::Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" && "),
            ),
            Some(other) => bail!(
                "`build.command` must be a string or a list, not {}",
                other.type_str()
            ),
        };
        Ok(ComponentDecl {
            source,
            key_value_stores: self.key_value_stores,
            allowed_outbound_hosts: self.allowed_outbound_hosts,
            variables: self.variables,
            environment: self.environment,
            build_command,
        })
    }
}

impl RawHttpTrigger {
    fn validate(self, components: &BTreeMap<String, ComponentDecl>) -> Result<HttpTrigger> {
        if let Some(executor) = &self.executor {
            let kind = executor.get("type").and_then(toml::Value::as_str);
            if kind != Some("spin") {
                bail!("`executor`: only the default Spin executor is supported");
            }
        }
        let component = match self.component {
            toml::Value::String(id) => id,
            _ => bail!(
                "`component` must name a [component.<id>] table (inline components are not supported)"
            ),
        };
        if !components.contains_key(&component) {
            bail!("`component = \"{component}\"`: no [component.{component}] in the manifest");
        }
        let route = match self.route {
            // Spin makes any route absolute; the router reports what it cannot parse.
            RawRoute::Path(route) => Some(route),
            RawRoute::Private { private: true } => None,
            RawRoute::Private { private: false } => {
                bail!("`route`: `{{ private = false }}` is not a route; give a path")
            }
        };
        Ok(HttpTrigger { route, component })
    }
}

/// Spin's rule for variable names (see `capabilities::variables::check_name`).
fn check_variable_name(name: &str) -> Result<()> {
    check_name(name).map_err(|reason| anyhow!("invalid variable name {reason}"))
}

/// Spin's rule for ids: kebab-case words of lowercase letters and digits.
fn check_component_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.split('-').all(|word| {
            !word.is_empty()
                && word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if !valid {
        bail!("[component.{id}]: component ids are kebab-case (e.g. `my-component`)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        spin_manifest_version = 2
        [application]
        name = "demo"
        [variables]
        bucket = { default = "" }
        token = { required = true, secret = true }
        [[trigger.http]]
        route = "/..."
        component = "web"
        [component.web]
        source = "web.wasm"
        key_value_stores = ["default"]
        allowed_outbound_hosts = ["https://{{ bucket }}.example.com"]
        [component.web.variables]
        bucket = "{{ bucket }}"
        [component.web.build]
        command = "cargo build"
    "#;

    fn parse(text: &str) -> Result<App> {
        App::parse(text, Path::new("/app"))
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).unwrap_err())
    }

    #[test]
    fn parses_a_valid_manifest() {
        let app = parse(MINIMAL).unwrap();
        assert_eq!(app.name, "demo");
        assert_eq!(
            app.http_triggers,
            [HttpTrigger {
                route: Some("/...".into()),
                component: "web".into()
            }]
        );
        let web = &app.components["web"];
        assert_eq!(web.source, Path::new("/app/web.wasm"));
        assert_eq!(web.key_value_stores, ["default"]);
        assert_eq!(web.build_command.as_deref(), Some("cargo build"));
        assert!(app.variables["token"].secret);
    }

    #[test]
    fn the_project_manifest_is_valid() {
        let text = include_str!("../../spin.toml");
        let app = parse(text).unwrap();
        assert_eq!(app.components.len(), 1);
    }

    #[test]
    fn unknown_fields_are_named() {
        let text = MINIMAL.replace("key_value_stores", "key_value_store");
        let error = error_of(&text);
        assert!(error.contains("unknown field `key_value_store`"), "{error}");
        assert!(error.contains("line 13, column 9"), "{error}");
    }

    #[test]
    fn other_manifest_versions_are_refused() {
        let error =
            error_of(&MINIMAL.replace("spin_manifest_version = 2", "spin_manifest_version = 1"));
        assert!(error.contains("only manifest version 2"), "{error}");
    }

    #[test]
    fn unimplemented_spin_features_are_refused_by_name() {
        let text = MINIMAL.replace(
            "[component.web.variables]",
            "files = [\"a\"]\n[component.web.variables]",
        );
        assert!(error_of(&text).contains("`files` is a Spin feature"));
    }

    #[test]
    fn triggers_must_name_an_existing_component() {
        let error = error_of(&MINIMAL.replace("component = \"web\"", "component = \"api\""));
        assert!(error.contains("no [component.api]"), "{error}");
    }

    #[test]
    fn variable_rules_follow_spin() {
        let error = error_of(
            &MINIMAL.replace("bucket = { default = \"\" }", "Bucket = { default = \"\" }"),
        );
        assert!(
            error.contains("invalid variable name \"Bucket\""),
            "{error}"
        );
        let error =
            error_of(&MINIMAL.replace("required = true", "required = true, default = \"x\""));
        assert!(
            error.contains("both `required` and have a `default`"),
            "{error}"
        );
        let error =
            error_of(&MINIMAL.replace("bucket = \"{{ bucket }}\"", "bucket = \"{{ missing }}\""));
        assert!(error.contains("missing"), "{error}");
    }

    #[test]
    fn component_ids_are_kebab_case() {
        assert!(check_component_id("my-component2").is_ok());
        for bad in ["", "My", "a--b", "-a", "a_b", "2a"] {
            assert!(check_component_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn private_routes_are_kept_but_unroutable() {
        let app =
            parse(&MINIMAL.replace("route = \"/...\"", "route = { private = true }")).unwrap();
        assert_eq!(app.http_triggers[0].route, None);
    }
}
