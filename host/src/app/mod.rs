//! What to run: an application as the host sees it, whatever it came from. A local `spin.toml`
//! is locked as Spin locks it ([`manifest`]); that locked app, or a registry artifact's
//! ([`locked`]), becomes the [`App`] the host serves.

pub mod locked;
pub mod manifest;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The application as the rest of the host sees it: validated, paths resolved.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub version: String,
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
    pub description: Option<String>,
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

/// Keeps only the triggers of the `retained` components and the components they name, as
/// Spin's `--component-id` does (an empty list keeps everything). Every id must be a
/// component of the app, and something must be left to serve.
pub fn retain_components(mut app: App, retained: &[String]) -> Result<App> {
    if retained.is_empty() {
        return Ok(app);
    }
    (|| {
        if let Some(unknown) = retained.iter().find(|id| !app.components.contains_key(*id)) {
            bail!("Specified component {unknown:?} not found in application");
        }
        Ok(())
    })()
    .context("failed to resolve application with only components selected with --component")?;
    app.http_triggers
        .retain(|trigger| retained.contains(&trigger.component));
    let triggered: Vec<&String> = app.http_triggers.iter().map(|t| &t.component).collect();
    app.components.retain(|id, _| triggered.contains(&id));
    if app.http_triggers.is_empty() {
        bail!("No triggers in app");
    }
    Ok(app)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> App {
        manifest::parse(
            r#"
            spin_manifest_version = 2
            [application]
            name = "two"
            [[trigger.http]]
            route = "/a/..."
            component = "a"
            [[trigger.http]]
            route = "/b/..."
            component = "b"
            [component.a]
            source = "a.wasm"
            [component.b]
            source = "b.wasm"
            [component.unused]
            source = "c.wasm"
            "#,
            std::path::Path::new("/app"),
        )
        .and_then(|locked| locked.to_app())
        .unwrap()
    }

    #[test]
    fn retaining_components_keeps_their_triggers_only() {
        let kept = retain_components(app(), &["b".to_string()]).unwrap();
        assert_eq!(kept.http_triggers.len(), 1);
        assert_eq!(kept.http_triggers[0].component, "b");
        assert_eq!(kept.components.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(retain_components(app(), &[]).unwrap().components.len(), 3);
    }

    #[test]
    fn retaining_follows_spins_errors() {
        let error = retain_components(app(), &["nope".to_string()]).unwrap_err();
        assert_eq!(
            format!("{error:#}"),
            "failed to resolve application with only components selected with --component: \
             Specified component \"nope\" not found in application"
        );
        let error = retain_components(app(), &["unused".to_string()]).unwrap_err();
        assert_eq!(error.to_string(), "No triggers in app");
    }
}
