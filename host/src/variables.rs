//! Spin variables: application variables (manifest defaults overridden by
//! `SPIN_VARIABLE_<NAME>` environment variables), rendered into each component's variable
//! templates once at start-up, and served through `fermyon:spin/variables@2.0.0`.
//!
//! Spin resolves lazily because some of its providers (Vault, Azure Key Vault) are dynamic.
//! This host's providers are the manifest and the process environment, which cannot change
//! while it runs, so everything is rendered up front: a missing required variable stops the
//! start, and a request never parses a template.

use crate::bindings::fermyon::spin::variables::{self, Error};
use crate::manifest::{VariableDecl, check_variable_name};
use anyhow::{Result, bail};
use std::collections::BTreeMap;

/// Spin's environment provider prefix: `s3_bucket` is read from `SPIN_VARIABLE_S3_BUCKET`.
pub const ENV_PREFIX: &str = "SPIN_VARIABLE_";

/// A string with `{{ variable }}` references, as in component variables and
/// `allowed_outbound_hosts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Variable(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Literal(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let Some(end) = after.find("}}") else {
                bail!("unclosed `{{{{` in {text:?}");
            };
            let name = after[..end].trim();
            check_variable_name(name)?;
            parts.push(Part::Variable(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// Every reference must name a declared application variable.
    pub fn check_references(&self, declared: &BTreeMap<String, VariableDecl>) -> Result<()> {
        for part in &self.0 {
            if let Part::Variable(name) = part
                && !declared.contains_key(name)
            {
                bail!("`{{{{ {name} }}}}` refers to no variable in [variables]");
            }
        }
        Ok(())
    }

    pub fn render(&self, values: &AppVariables) -> String {
        self.0
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.as_str(),
                // References are checked against the declarations when the manifest loads,
                // and AppVariables holds a value for every declaration.
                Part::Variable(name) => values.0.get(name).map_or("", String::as_str),
            })
            .collect()
    }
}

/// The value of every application variable.
#[derive(Debug, Clone, Default)]
pub struct AppVariables(BTreeMap<String, String>);

impl AppVariables {
    /// Defaults from the manifest, overridden by `SPIN_VARIABLE_*` as read by `env`.
    pub fn resolve(
        declared: &BTreeMap<String, VariableDecl>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AppVariables> {
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, decl) in declared {
            let key = format!("{ENV_PREFIX}{}", name.to_ascii_uppercase());
            match env(&key).or_else(|| decl.default.clone()) {
                Some(value) => {
                    values.insert(name.clone(), value);
                }
                None => missing.push(key),
            }
        }
        if !missing.is_empty() {
            bail!(
                "required variables have no value: set {}",
                missing.join(", ")
            );
        }
        Ok(AppVariables(values))
    }
}

/// One component's variables, rendered.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables(BTreeMap<String, String>);

impl ComponentVariables {
    pub fn render(templates: &BTreeMap<String, String>, app: &AppVariables) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (name, template) in templates {
            values.insert(name.clone(), Template::parse(template)?.render(app));
        }
        Ok(ComponentVariables(values))
    }

    /// `variables.get` with Spin's error variants.
    pub fn get(&self, name: &str) -> Result<String, Error> {
        if check_variable_name(name).is_err() {
            return Err(Error::InvalidName(format!(
                "invalid variable name {name:?}"
            )));
        }
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| Error::Undefined(format!("no variable for {name:?}")))
    }
}

impl variables::Host for crate::runtime::InstanceState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(self.component.variables.get(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared() -> BTreeMap<String, VariableDecl> {
        let decl = |default: Option<&str>| VariableDecl {
            default: default.map(str::to_string),
            required: default.is_none(),
            secret: false,
        };
        BTreeMap::from([
            ("bucket".to_string(), decl(Some("photos"))),
            ("region".to_string(), decl(Some("us-east-1"))),
            ("token".to_string(), decl(None)),
        ])
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn templates_render_literals_and_references() {
        let app = AppVariables::resolve(&declared(), env(&[("SPIN_VARIABLE_TOKEN", "t")])).unwrap();
        let template = Template::parse("https://{{bucket}}.s3.{{ region }}.example.com").unwrap();
        assert_eq!(
            template.render(&app),
            "https://photos.s3.us-east-1.example.com"
        );
        assert_eq!(Template::parse("plain").unwrap().render(&app), "plain");
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(Template::parse("{{ bucket").is_err());
        assert!(Template::parse("{{ Bucket }}").is_err());
        assert!(Template::parse("{{}}").is_err());
        let error = Template::parse("{{ nope }}")
            .unwrap()
            .check_references(&declared());
        assert!(format!("{:#}", error.unwrap_err()).contains("nope"));
    }

    #[test]
    fn environment_overrides_defaults() {
        let app = AppVariables::resolve(
            &declared(),
            env(&[
                ("SPIN_VARIABLE_BUCKET", "logs"),
                ("SPIN_VARIABLE_TOKEN", "t"),
            ]),
        )
        .unwrap();
        assert_eq!(app.0["bucket"], "logs");
        assert_eq!(app.0["region"], "us-east-1");
    }

    #[test]
    fn missing_required_variables_name_their_env_var() {
        let error = AppVariables::resolve(&declared(), env(&[])).unwrap_err();
        assert!(error.to_string().contains("SPIN_VARIABLE_TOKEN"), "{error}");
    }

    #[test]
    fn get_uses_spins_error_variants() {
        let app = AppVariables::resolve(&declared(), env(&[("SPIN_VARIABLE_TOKEN", "t")])).unwrap();
        let templates = BTreeMap::from([("bucket".to_string(), "{{ bucket }}".to_string())]);
        let vars = ComponentVariables::render(&templates, &app).unwrap();
        assert_eq!(vars.get("bucket").unwrap(), "photos");
        assert!(matches!(vars.get("region"), Err(Error::Undefined(_))));
        assert!(matches!(vars.get("Bad-Name"), Err(Error::InvalidName(_))));
    }
}
