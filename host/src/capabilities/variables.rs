//! `fermyon:spin/variables@2.0.0` and Spin 4's `spin:variables@3.0.0`: application variables,
//! rendered into each component's variable templates once at start-up.
//!
//! A variable's value comes from the first provider that has one, as in Spin: the runtime
//! config's environment providers in order, then the one Spin always appends (prefix
//! `SPIN_VARIABLE`, dotenv file `.env`), then the manifest's default. Spin resolves lazily
//! because some of its providers (Vault, Azure Key Vault) are dynamic; environment providers
//! cannot change while the host runs, so everything is rendered up front: a missing required
//! variable stops the start, and a request never parses a template. Names and errors follow
//! Spin's `spin-expressions` word for word.

use anyhow::{Result, bail};
use bindings::fermyon::spin::variables;
pub use bindings::fermyon::spin::variables::Error;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Accessor, HasSelf, Linker};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "greeter:app/variables-host",
        imports: { default: async | trappable },
    });
}

mod bindings_v3 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "greeter:app/variables-host-v3",
        imports: { default: trappable },
    });
}

use bindings_v3::spin::variables::variables as variables_v3;

/// The prefix of the environment provider Spin always appends: `s3_bucket` is read from
/// `SPIN_VARIABLE_S3_BUCKET`.
pub const DEFAULT_ENV_PREFIX: &str = "SPIN_VARIABLE";

/// The dotenv file of that provider, relative to the working directory.
pub const DEFAULT_DOTENV_FILE: &str = ".env";

/// Spin's environment provider (`[[config_provider]] type = "env"` in the runtime config):
/// variable `name` is `<prefix>_<NAME>` from the process environment, else from the dotenv
/// file. Spin always joins prefix and name with `_`, so the prefix `SPIN_VARIABLE_` that
/// spin-operator writes reads `SPIN_VARIABLE__NAME`, and the default provider finds the value.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvProvider {
    prefix: String,
    dotenv: BTreeMap<String, String>,
}

impl EnvProvider {
    /// A missing or unreadable dotenv file provides nothing, as in Spin.
    pub fn new(prefix: Option<&str>, dotenv_path: Option<&Path>) -> EnvProvider {
        let dotenv = dotenv_path
            .and_then(|path| dotenvy::from_path_iter(path).ok())
            .map(|entries| entries.filter_map(Result::ok).collect())
            .unwrap_or_default();
        EnvProvider {
            prefix: prefix.unwrap_or(DEFAULT_ENV_PREFIX).to_string(),
            dotenv,
        }
    }

    /// The provider Spin appends after the configured ones.
    pub fn spin_default() -> EnvProvider {
        EnvProvider::new(None, Some(&PathBuf::from(DEFAULT_DOTENV_FILE)))
    }

    fn key(&self, name: &str) -> String {
        format!("{}_{}", self.prefix, name.to_ascii_uppercase())
    }

    fn lookup(&self, name: &str, env: &impl Fn(&str) -> Option<String>) -> Option<String> {
        let key = self.key(name);
        env(&key).or_else(|| self.dotenv.get(&key).cloned())
    }
}

/// Spin's rule for a variable name, with Spin's reasons: lowercase ASCII letters, digits and
/// single underscores, starting with a letter and ending with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let reason = if name.is_empty() {
        "must not be empty".to_string()
    } else if let Some(invalid) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        format!(
            "invalid character {invalid:?}. Variable names may contain only lower-case letters, numbers, and underscores."
        )
    } else if !name.as_bytes()[0].is_ascii_lowercase() {
        "must start with a lowercase ASCII letter".to_string()
    } else if !name.as_bytes()[name.len() - 1].is_ascii_alphanumeric() {
        "must end with a lowercase ASCII letter or digit".to_string()
    } else if name.contains("__") {
        "must not contain multiple consecutive underscores".to_string()
    } else {
        return Ok(());
    };
    Err(format!("{name:?}: {reason}"))
}

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
            check_name(name)
                .map_err(|reason| anyhow::anyhow!("invalid variable name: {reason}"))?;
            parts.push(Part::Variable(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template(parts))
    }

    /// Every reference must name a declared application variable.
    pub fn check_references(&self, is_declared: impl Fn(&str) -> bool) -> Result<()> {
        for part in &self.0 {
            if let Part::Variable(name) = part
                && !is_declared(name)
            {
                bail!("invalid variable template: unknown variable {name:?}");
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
    /// `declared` gives each variable's name and manifest default; `given` (`--variable`,
    /// by exact name), then `providers` (then Spin's default provider) override it, the
    /// providers reading the process environment through `env`.
    pub fn resolve<'a>(
        declared: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
        given: &BTreeMap<String, String>,
        providers: &[EnvProvider],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<AppVariables> {
        let spin_default = EnvProvider::spin_default();
        let chain: Vec<&EnvProvider> = providers.iter().chain([&spin_default]).collect();
        let mut values = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, default) in declared {
            let provided = given.get(name).cloned().or_else(|| {
                chain
                    .iter()
                    .find_map(|provider| provider.lookup(name, &env))
            });
            match provided.or_else(|| default.map(str::to_string)) {
                Some(value) => {
                    values.insert(name.to_string(), value);
                }
                None => missing.push(spin_default.key(name)),
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

/// One component's variables, rendered: what `variables.get` answers.
#[derive(Debug, Clone, Default)]
pub struct ComponentVariables {
    component: String,
    values: BTreeMap<String, String>,
}

impl ComponentVariables {
    pub fn render(
        component: &str,
        templates: &BTreeMap<String, String>,
        app: &AppVariables,
    ) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (name, template) in templates {
            values.insert(name.clone(), Template::parse(template)?.render(app));
        }
        Ok(ComponentVariables {
            component: component.to_string(),
            values,
        })
    }

    /// `variables.get`, with Spin's variants and messages.
    pub fn get(&self, name: &str) -> Result<String, Error> {
        check_name(name).map_err(Error::InvalidName)?;
        self.values.get(name).cloned().ok_or_else(|| {
            Error::Undefined(format!("no variable for {:?}.{name:?}", self.component))
        })
    }
}

/// The variables state of one instance: its component's rendered variables.
pub struct VariablesState(pub Arc<ComponentVariables>);

/// Links `fermyon:spin/variables` for stores of `T`, reaching each instance's state through
/// `project`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut VariablesState,
) -> Result<()> {
    variables::add_to_linker::<T, HasSelf<VariablesState>>(linker, project)?;
    Ok(())
}

impl variables::Host for VariablesState {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, Error>> {
        Ok(self.0.get(&name))
    }
}

/// Links `spin:variables/variables@3.0.0`: the same answers, from an async function.
pub fn add_v3_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    project: fn(&mut T) -> &mut VariablesState,
) -> Result<()> {
    variables_v3::add_to_linker::<T, HasSelf<VariablesState>>(linker, project)?;
    Ok(())
}

impl variables_v3::Host for VariablesState {}

impl<T> variables_v3::HostWithStore<T> for HasSelf<VariablesState> {
    async fn get(
        accessor: &Accessor<T, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, variables_v3::Error>> {
        let value = accessor.with(|mut access| access.get().0.get(&name));
        Ok(value.map_err(|error| match error {
            Error::InvalidName(reason) => variables_v3::Error::InvalidName(reason),
            Error::Undefined(reason) => variables_v3::Error::Undefined(reason),
            Error::Provider(reason) => variables_v3::Error::Provider(reason),
            Error::Other(reason) => variables_v3::Error::Other(reason),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECLARED: [(&str, Option<&str>); 3] = [
        ("bucket", Some("photos")),
        ("region", Some("us-east-1")),
        ("token", None),
    ];

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    fn app() -> AppVariables {
        AppVariables::resolve(
            DECLARED,
            &BTreeMap::new(),
            &[],
            env(&[("SPIN_VARIABLE_TOKEN", "t")]),
        )
        .unwrap()
    }

    #[test]
    fn templates_render_literals_and_references() {
        let template = Template::parse("https://{{bucket}}.s3.{{ region }}.example.com").unwrap();
        assert_eq!(
            template.render(&app()),
            "https://photos.s3.us-east-1.example.com"
        );
        assert_eq!(Template::parse("plain").unwrap().render(&app()), "plain");
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(Template::parse("{{ bucket").is_err());
        assert!(Template::parse("{{ Bucket }}").is_err());
        assert!(Template::parse("{{}}").is_err());
        let error = Template::parse("{{ nope }}")
            .unwrap()
            .check_references(|name| name == "bucket")
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid variable template: unknown variable \"nope\""
        );
    }

    #[test]
    fn environment_overrides_defaults() {
        let app = AppVariables::resolve(
            DECLARED,
            &BTreeMap::new(),
            &[],
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
        let error = AppVariables::resolve(DECLARED, &BTreeMap::new(), &[], env(&[])).unwrap_err();
        assert!(error.to_string().contains("SPIN_VARIABLE_TOKEN"), "{error}");
    }

    #[test]
    fn the_command_line_then_providers_in_order_and_prefixes_joined_with_an_underscore() {
        let dotenv = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            dotenv.path(),
            "APP_REGION=eu-west-1\nAPP_BUCKET=from-file\n",
        )
        .unwrap();
        let configured = [
            // What spin-operator writes: it reads SPIN_VARIABLE__BUCKET, which nobody sets.
            EnvProvider::new(Some("SPIN_VARIABLE_"), None),
            EnvProvider::new(Some("APP"), Some(dotenv.path())),
        ];
        let given = BTreeMap::from([("token".to_owned(), "from-the-command-line".to_owned())]);
        let app = AppVariables::resolve(
            DECLARED,
            &given,
            &configured,
            env(&[
                ("APP_BUCKET", "from-env"),
                ("SPIN_VARIABLE_BUCKET", "default-provider"),
                ("SPIN_VARIABLE_TOKEN", "t"),
            ]),
        )
        .unwrap();
        assert_eq!(
            app.0["bucket"], "from-env",
            "the environment before the dotenv file"
        );
        assert_eq!(
            app.0["region"], "eu-west-1",
            "the dotenv file before the default"
        );
        assert_eq!(
            app.0["token"], "from-the-command-line",
            "--variable before every provider"
        );
        let missing = EnvProvider::new(Some("APP"), Some(Path::new("/nonexistent/.env")));
        assert_eq!(missing.lookup("region", &env(&[])), None);
    }

    #[test]
    fn names_follow_spins_rules_and_reasons() {
        for good in ["a", "abc", "a1b2c3", "a_1", "a_1_b_3"] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        let reason = |name| check_name(name).unwrap_err();
        assert_eq!(reason(""), "\"\": must not be empty");
        assert_eq!(
            reason("aX"),
            "\"aX\": invalid character 'X'. Variable names may contain only lower-case letters, numbers, and underscores."
        );
        assert_eq!(
            reason("1bc"),
            "\"1bc\": must start with a lowercase ASCII letter"
        );
        assert_eq!(
            reason("x_"),
            "\"x_\": must end with a lowercase ASCII letter or digit"
        );
        assert_eq!(
            reason("a__b"),
            "\"a__b\": must not contain multiple consecutive underscores"
        );
        for bad in ["_x", "x.y", "x-y"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn get_answers_with_spins_variants_and_messages() {
        let templates = BTreeMap::from([("bucket".to_string(), "{{ bucket }}".to_string())]);
        let vars = ComponentVariables::render("web", &templates, &app()).unwrap();
        assert_eq!(vars.get("bucket").unwrap(), "photos");
        match vars.get("region") {
            Err(Error::Undefined(message)) => {
                assert_eq!(message, "no variable for \"web\".\"region\"")
            }
            other => panic!("{other:?}"),
        }
        match vars.get("Bad-Name") {
            Err(Error::InvalidName(message)) => assert_eq!(
                message,
                "\"Bad-Name\": invalid character 'B'. Variable names may contain only lower-case letters, numbers, and underscores."
            ),
            other => panic!("{other:?}"),
        }
    }
}
