//! `spin.toml` (Spin manifest version 2), parsed strictly and locked as Spin locks it: the
//! [`LockedApp`] that `spin up` runs and `spin registry push` ships.
//!
//! The serde types mirror Spin's manifest schema and reject unknown fields, as Spin does, so
//! a typo fails loudly with the field's name and position. Fields Spin knows but this host
//! does not implement (file mounts, SQLite databases, AI models...) are refused by name
//! instead of being silently ignored. Tables keep the file's order, as Spin's lock does.

use super::App;
use super::locked::{
    ContentRef, HTTP_TRIGGER, LockedApp, LockedComponent, LockedSource, LockedTrigger,
    LockedVariable, WASM_CONTENT_TYPE,
};
use anyhow::{Context, Result, anyhow, bail};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

impl App {
    pub fn load(path: &Path) -> Result<App> {
        lock(path)?
            .to_app()
            .with_context(|| format!("invalid manifest {}", path.display()))
    }
}

/// The locked app of the manifest at `path`, component sources as absolute `file://` URLs.
pub fn lock(path: &Path) -> Result<LockedApp> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the manifest {}", path.display()))?;
    parse(&text, &directory_of(path)?)
        .with_context(|| format!("invalid manifest {}", path.display()))
}

/// The directory the manifest at `path` lives in, absolute: where its relative paths start.
/// Made absolute before taking the parent, since a bare file name's parent is the empty path.
pub fn directory_of(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path)
        .with_context(|| format!("cannot resolve the path {}", path.display()))?;
    Ok(absolute
        .parent()
        .map_or_else(|| absolute.clone(), Path::to_path_buf))
}

pub fn parse(text: &str, dir: &Path) -> Result<LockedApp> {
    let version: ManifestVersion = toml::from_str(text)?;
    if version.spin_manifest_version != 2 {
        bail!(
            "spin_manifest_version = {}: only manifest version 2 is supported",
            version.spin_manifest_version
        );
    }
    let raw: RawManifest = toml::from_str(text)?;
    raw.lock(dir)
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
    variables: IndexMap<String, RawVariable>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: IndexMap<String, RawComponent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApplication {
    name: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    authors: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariable {
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
    description: Option<String>,
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
    id: Option<String>,
    route: toml::Value,
    component: toml::Value,
    executor: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    source: toml::Value,
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
    workdir: Option<String>,
    #[serde(default)]
    watch: Vec<String>,
}

impl RawManifest {
    fn lock(self, dir: &Path) -> Result<LockedApp> {
        let mut variables = BTreeMap::new();
        for (name, raw) in self.variables {
            check_variable_name(&name).with_context(|| format!("[variables.{name}]"))?;
            if raw.required && raw.default.is_some() {
                bail!(
                    "[variables.{name}]: a variable cannot be both `required` and have a `default`"
                );
            }
            if !raw.required && raw.default.is_none() {
                bail!("[variables.{name}]: give it a `default` or mark it `required = true`");
            }
            let variable = LockedVariable {
                description: raw.description,
                default: raw.default,
                secret: raw.secret,
            };
            variables.insert(name, variable);
        }

        let mut components = Vec::new();
        for (id, raw) in self.component {
            check_component_id(&id)?;
            let component = raw
                .lock(&id, dir)
                .with_context(|| format!("[component.{id}]"))?;
            components.push(component);
        }

        // Spin's trigger ids: the given one, else `<component>-http-trigger` while free, else
        // the first free `http-trigger<N>`.
        let mut taken: Vec<String> = self
            .trigger
            .http
            .iter()
            .filter_map(|t| t.id.clone())
            .collect();
        let mut triggers = Vec::new();
        for (index, raw) in self.trigger.http.into_iter().enumerate() {
            let trigger = raw
                .lock(&mut taken)
                .with_context(|| format!("[[trigger.http]] number {}", index + 1))?;
            triggers.push(trigger);
        }

        // Spin's metadata: empty strings and lists left out; `trigger` names the app's one
        // trigger type (for older hosts); `triggers` holds `[application.trigger.*]`.
        let app = self.application;
        let mut metadata = BTreeMap::from([
            ("name".to_string(), json!(app.name)),
            ("triggers".to_string(), json!({})),
        ]);
        for (key, value) in [("version", app.version), ("description", app.description)] {
            if !value.is_empty() {
                metadata.insert(key.to_string(), json!(value));
            }
        }
        if !app.authors.is_empty() {
            metadata.insert("authors".to_string(), json!(app.authors));
        }
        if !triggers.is_empty() {
            metadata.insert("trigger".to_string(), json!({ "type": HTTP_TRIGGER }));
        }
        Ok(LockedApp {
            spin_lock_version: 0,
            must_understand: Vec::new(),
            metadata,
            host_requirements: BTreeMap::new(),
            variables,
            triggers,
            components,
        })
    }
}

impl RawComponent {
    fn lock(self, id: &str, dir: &Path) -> Result<LockedComponent> {
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
        for name in self.variables.keys() {
            check_variable_name(name).context("`variables`")?;
        }
        for label in &self.key_value_stores {
            if spin_id(label, '-', false).is_err() && spin_id(label, '_', false).is_err() {
                bail!("`key_value_stores`: {label:?}: expected kebab-case or snake_case");
            }
        }
        let source = match self.source {
            toml::Value::String(path) => url::Url::from_file_path(dir.join(path))
                .map_err(|()| anyhow!("`source`: {} is not an absolute path", dir.display()))?,
            toml::Value::Table(_) => {
                bail!("`source`: only a local file path is supported, not a URL or registry source")
            }
            other => bail!("`source` must be a file path, not {}", other.type_str()),
        };
        // Spin's component metadata: each key left out when empty.
        let mut metadata = BTreeMap::new();
        if !self.allowed_outbound_hosts.is_empty() {
            metadata.insert(
                "allowed_outbound_hosts".to_string(),
                json!(self.allowed_outbound_hosts),
            );
        }
        if let Some(build) = self.build {
            metadata.insert("build".to_string(), build.lock()?);
        }
        if let Some(description) = self.description.filter(|d| !d.is_empty()) {
            metadata.insert("description".to_string(), json!(description));
        }
        if !self.key_value_stores.is_empty() {
            metadata.insert("key_value_stores".to_string(), json!(self.key_value_stores));
        }
        Ok(LockedComponent {
            id: id.to_string(),
            metadata,
            source: LockedSource {
                content_type: WASM_CONTENT_TYPE.to_string(),
                content: ContentRef {
                    source: Some(source.to_string()),
                    ..ContentRef::default()
                },
            },
            env: self.environment,
            files: Vec::new(),
            config: self.variables,
            dependencies: BTreeMap::new(),
            host_requirements: BTreeMap::new(),
        })
    }
}

impl RawBuild {
    /// `{"command": ..., "watch"?: [...], "workdir"?: ...}`, keys sorted as Spin writes them.
    fn lock(self) -> Result<Value> {
        let command = match self.command {
            toml::Value::String(command) => json!(command),
            toml::Value::Array(commands) => json!(
                commands
                    .iter()
                    .map(|c| c
                        .as_str()
                        .context("`build.command` entries must be strings"))
                    .collect::<Result<Vec<_>>>()?
            ),
            other => bail!(
                "`build.command` must be a string or a list, not {}",
                other.type_str()
            ),
        };
        let mut build = BTreeMap::from([("command", command)]);
        if !self.watch.is_empty() {
            build.insert("watch", json!(self.watch));
        }
        if let Some(workdir) = self.workdir {
            build.insert("workdir", json!(workdir));
        }
        Ok(json!(build))
    }
}

impl RawHttpTrigger {
    fn lock(self, taken: &mut Vec<String>) -> Result<LockedTrigger> {
        let component = match self.component {
            toml::Value::String(id) => id,
            _ => bail!(
                "`component` must name a [component.<id>] table (inline components are not supported)"
            ),
        };
        let id = self.id.unwrap_or_else(|| {
            let natural = format!("{component}-{HTTP_TRIGGER}-trigger");
            let id = if taken.contains(&natural) {
                (1..)
                    .map(|n| format!("{HTTP_TRIGGER}-trigger{n}"))
                    .find(|id| !taken.contains(id))
                    .expect("some counter is free")
            } else {
                natural
            };
            taken.push(id.clone());
            id
        });
        // The trigger's table less `id`, plus `component`; keys sorted, as Spin writes it.
        let mut config = BTreeMap::from([
            ("component", json!(component)),
            ("route", serde_json::to_value(self.route)?),
        ]);
        if let Some(executor) = self.executor {
            config.insert("executor", serde_json::to_value(executor)?);
        }
        Ok(LockedTrigger {
            id,
            trigger_type: HTTP_TRIGGER.to_string(),
            trigger_config: json!(config),
        })
    }
}

/// Spin's manifest rule for variable names, app and component alike: lowercase snake_case,
/// each `_`-separated word starting with a letter (stricter than the rule for the names a
/// guest asks for, `capabilities::variables::check_name`, so those pass it too).
fn check_variable_name(name: &str) -> Result<()> {
    spin_id(name, '_', true).map_err(|reason| anyhow!("invalid variable name {name:?}: {reason}"))
}

/// Spin's rule for component ids: kebab-case.
fn check_component_id(id: &str) -> Result<()> {
    spin_id(id, '-', false).map_err(|reason| {
        anyhow!("[component.{id}]: component ids are kebab-case (e.g. `my-component`): {reason}")
    })
}

/// Spin's ids, with its reasons: words joined by `delimiter`, each starting with an ASCII
/// letter, of ASCII letters and digits, all lowercase or all uppercase (only lowercase when
/// `lower`).
fn spin_id(id: &str, delimiter: char, lower: bool) -> Result<(), String> {
    if id.is_empty() {
        return Err("empty".into());
    }
    let wrong = if delimiter == '_' { '-' } else { '_' };
    if id.contains(wrong) {
        return Err(format!(
            "words must be separated with {delimiter:?}, not {wrong:?}"
        ));
    }
    for word in id.split(delimiter) {
        let Some(first) = word.chars().next() else {
            return Err(format!("{delimiter:?}-separated words must not be empty"));
        };
        if !first.is_ascii_alphabetic() {
            return Err(format!(
                "{delimiter:?}-separated words must start with an ASCII letter; got {first:?}"
            ));
        }
        if let Some(other) = word.chars().find(|c| !c.is_ascii_alphanumeric()) {
            return Err(format!(
                "{delimiter:?}-separated words may only contain alphanumeric ASCII; got {other:?}"
            ));
        }
        let upper = first.is_ascii_uppercase();
        if word
            .chars()
            .any(|c| c.is_ascii_alphabetic() && c.is_ascii_uppercase() != upper)
        {
            return Err(format!(
                "{delimiter:?}-separated words must be all lowercase or all UPPERCASE; got {word:?}"
            ));
        }
        if lower && upper {
            return Err(format!(
                "Lower-case identifiers must be all lowercase; got {id:?}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::HttpTrigger;

    #[test]
    fn a_manifests_directory_is_absolute_even_for_a_bare_file_name() {
        let here = std::env::current_dir().unwrap();
        assert_eq!(directory_of(Path::new("spin.toml")).unwrap(), here);
        assert_eq!(
            directory_of(Path::new("app/spin.toml")).unwrap(),
            here.join("app")
        );
        assert_eq!(
            directory_of(Path::new("/srv/app/spin.toml")).unwrap(),
            Path::new("/srv/app")
        );
    }

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
        super::parse(text, Path::new("/app"))?.to_app()
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
    fn manifests_lock_as_spin_locks_them() {
        // Spin 3.6.3's loader on this manifest (tests/README.md: fixtures from Spin's source),
        // with the origin and file mounts it adds left out.
        let manifest = r#"
            spin_manifest_version = 2
            [application]
            name = "greeter"
            version = "0.1.0"
            authors = ["Greeter developers"]
            description = "Hello world"
            [variables]
            s3_endpoint = { default = "https://s3.us-east-1.amazonaws.com" }
            api_token = { required = true, secret = true, description = "API token" }
            [[trigger.http]]
            route = "/..."
            component = "greeter"
            [component.greeter]
            source = "target/app.wasm"
            description = "The Greeter HTTP API"
            key_value_stores = ["default"]
            allowed_outbound_hosts = ["{{ s3_endpoint }}"]
            environment = { RUST_LOG = "info", A_FIRST = "1" }
            [component.greeter.variables]
            s3_endpoint = "{{ s3_endpoint }}"
            token = "{{ api_token }}"
            [component.greeter.build]
            command = "cargo build --target wasm32-wasip2 --release -p greeter"
            watch = ["component/src/**/*.rs", "component/Cargo.toml"]
        "#;
        let locked = super::parse(manifest, Path::new("/tmp/testapp")).unwrap();
        let spin = r#"{"spin_lock_version":0,"metadata":{"authors":["Greeter developers"],"description":"Hello world","name":"greeter","trigger":{"type":"http"},"triggers":{},"version":"0.1.0"},"variables":{"api_token":{"description":"API token","secret":true},"s3_endpoint":{"default":"https://s3.us-east-1.amazonaws.com"}},"triggers":[{"id":"greeter-http-trigger","trigger_type":"http","trigger_config":{"component":"greeter","route":"/..."}}],"components":[{"id":"greeter","metadata":{"allowed_outbound_hosts":["{{ s3_endpoint }}"],"build":{"command":"cargo build --target wasm32-wasip2 --release -p greeter","watch":["component/src/**/*.rs","component/Cargo.toml"]},"description":"The Greeter HTTP API","key_value_stores":["default"]},"source":{"content_type":"application/wasm","source":"file:///tmp/testapp/target/app.wasm"},"env":{"A_FIRST":"1","RUST_LOG":"info"},"config":{"s3_endpoint":"{{ s3_endpoint }}","token":"{{ api_token }}"}}]}"#;
        assert_eq!(String::from_utf8(locked.to_json()).unwrap(), spin);
    }

    #[test]
    fn trigger_ids_follow_spin() {
        let two = MINIMAL.replace(
            "[component.web]",
            "[[trigger.http]]\nroute = \"/b\"\ncomponent = \"web\"\n[[trigger.http]]\nid = \"http-trigger1\"\nroute = \"/c\"\ncomponent = \"web\"\n[component.web]",
        );
        let ids: Vec<String> = super::parse(&two, Path::new("/app"))
            .unwrap()
            .triggers
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, ["web-http-trigger", "http-trigger2", "http-trigger1"]);
    }

    #[test]
    fn the_project_manifest_is_valid() {
        let text = include_str!("../../../spin.toml");
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
        assert!(
            error.contains("names component \"api\", which the app does not have"),
            "{error}"
        );
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
        for good in ["my-component2", "API-v2"] {
            assert!(check_component_id(good).is_ok(), "{good}");
        }
        for bad in ["", "My", "a--b", "-a", "a_b", "2a", "a.b"] {
            assert!(check_component_id(bad).is_err(), "{bad}");
        }
    }

    /// Spin's manifest refuses what its runtime rule alone would let through.
    #[test]
    fn names_and_labels_follow_spins_manifest_rules() {
        for (name, reason) in [
            (
                "item_2",
                "'_'-separated words must start with an ASCII letter; got '2'",
            ),
            ("my-var", "words must be separated with '_', not '-'"),
            ("v__x", "'_'-separated words must not be empty"),
        ] {
            let error = format!("{:#}", check_variable_name(name).unwrap_err());
            assert!(error.contains(reason), "{name}: {error}");
        }
        assert!(check_variable_name("item_b2").is_ok());
        let component_variable =
            MINIMAL.replace("bucket = \"{{ bucket }}\"", "item_2 = \"{{ bucket }}\"");
        let error = error_of(&component_variable);
        assert!(
            error.contains("invalid variable name \"item_2\""),
            "{error}"
        );
        for (labels, ok) in [
            ("[\"default\", \"my-cache\", \"my_cache\", \"CACHE\"]", true),
            ("[\"Cache\"]", false),
            ("[\"cache.v2\"]", false),
            ("[\"my-cache_x\"]", false),
            ("[\"\"]", false),
        ] {
            let manifest = MINIMAL.replace(
                "key_value_stores = [\"default\"]",
                &format!("key_value_stores = {labels}"),
            );
            assert_ne!(manifest, MINIMAL);
            let parsed = parse(&manifest);
            assert_eq!(parsed.is_ok(), ok, "{labels}: {:?}", parsed.err());
        }
    }

    #[test]
    fn private_routes_are_kept_but_unroutable() {
        let app =
            parse(&MINIMAL.replace("route = \"/...\"", "route = { private = true }")).unwrap();
        assert_eq!(app.http_triggers[0].route, None);
    }
}
