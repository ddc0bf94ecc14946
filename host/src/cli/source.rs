//! What `-f` names, told apart by Spin's rules (`spin up`): a path that exists is a manifest
//! or a directory holding `spin.toml`; otherwise something that reads as a registry
//! reference is one; anything else is an error saying which flag forces which reading.

use crate::app::App;
use crate::app::locked::LockedApp;
use crate::app::manifest::directory_of;
use crate::registry::cache::Cache;
use crate::registry::{Registry, RegistryOptions, parse_reference};
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

pub const DEFAULT_MANIFEST: &str = "spin.toml";

/// The directory of local state beside a local manifest.
const LOCAL_STATE_DIR: &str = ".greeter";

#[derive(Debug, PartialEq)]
pub enum AppSource {
    Manifest(PathBuf),
    Registry(String),
}

/// An app to run, and where its state and compiled code go unless told otherwise.
pub struct LoadedApp {
    pub app: App,
    pub default_state_dir: Option<PathBuf>,
    /// The user's cache for compiled components; `None` when there is none (no `HOME`).
    pub compile_cache: Option<PathBuf>,
}

impl AppSource {
    /// From `--from`, `--from-file` or `--from-registry` (clap lets through one at most).
    pub fn resolve(
        from: Option<&str>,
        from_file: Option<&Path>,
        from_registry: Option<&str>,
    ) -> Result<AppSource> {
        if let Some(reference) = from_registry {
            return Ok(AppSource::Registry(reference.to_string()));
        }
        if let Some(path) = from_file {
            return manifest_at(path);
        }
        let Some(from) = from else {
            if Path::new(DEFAULT_MANIFEST).is_file() {
                return Ok(AppSource::Manifest(DEFAULT_MANIFEST.into()));
            }
            bail!(
                "Default file '{DEFAULT_MANIFEST}' not found. Run `greeter-host up --from <APPLICATION>`, or `greeter-host up --help` for usage."
            );
        };
        if Path::new(from).exists() {
            return manifest_at(Path::new(from));
        }
        if is_probably_reference(from) {
            return Ok(AppSource::Registry(from.to_string()));
        }
        bail!(
            "File or directory '{from}' not found. If you meant to load from a registry, use the `--from-registry` option."
        )
    }

    pub async fn load(&self, registry: &RegistryOptions) -> Result<LoadedApp> {
        match self {
            AppSource::Manifest(path) => {
                let state = directory_of(path)?.join(LOCAL_STATE_DIR);
                // Compiled code is native code, loaded as it is: never from a directory that
                // came with the app (a repository could ship a `.greeter/cache`), but from the
                // user's cache, as for registry apps.
                let compile_cache = Cache::new(registry.cache_dir.clone())
                    .ok()
                    .map(|cache| cache.compile_dir());
                Ok(LoadedApp {
                    app: App::load(path)?,
                    compile_cache,
                    default_state_dir: Some(state),
                })
            }
            AppSource::Registry(reference) => {
                let registry = Registry::new(registry)?;
                let locked: LockedApp = registry.pull(reference).await?;
                Ok(LoadedApp {
                    app: locked.to_app()?,
                    default_state_dir: None,
                    compile_cache: Some(registry.compile_cache()),
                })
            }
        }
    }
}

/// A manifest file, or a directory's `spin.toml`.
fn manifest_at(path: &Path) -> Result<AppSource> {
    if path.is_dir() {
        let manifest = path.join(DEFAULT_MANIFEST);
        if !manifest.is_file() {
            bail!(
                "Directory {} does not contain a file named '{DEFAULT_MANIFEST}'",
                path.display()
            );
        }
        return Ok(AppSource::Manifest(manifest));
    }
    if matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("wasm" | "wat")
    ) {
        bail!(
            "{} is a Wasm file: greeter-host runs apps from their manifest; give its spin.toml",
            path.display()
        );
    }
    Ok(AppSource::Manifest(path.to_path_buf()))
}

/// Spin's heuristic: a reference with a tag other than `latest` or a digest is one; without
/// either, `acme/app` (which would be docker.io's) is not unless it names docker itself,
/// while `ghcr.io/acme/app` is.
fn is_probably_reference(text: &str) -> bool {
    let Ok(reference) = parse_reference(text) else {
        return false;
    };
    let explicit_tag =
        reference.tag().is_some_and(|tag| tag != "latest") || text.ends_with(":latest");
    let digest_only = reference.tag().is_none() && reference.digest().is_some();
    if explicit_tag || digest_only {
        return true;
    }
    !reference.registry().contains("docker") || text.contains("docker")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_told_apart_as_spin_does() {
        for reference in [
            "ghcr.io/acme/app:v1",
            "ghcr.io/acme/app",
            "localhost:5000/app",
            "app:v1",
            "docker.io/acme/app",
            "127.0.0.1:5000/greeter@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert!(is_probably_reference(reference), "{reference}");
        }
        for not_one in ["acme/app", "spin.toml", "Acme/App", "missing.toml"] {
            assert!(!is_probably_reference(not_one), "{not_one}");
        }
    }

    #[test]
    fn paths_that_exist_are_manifests_or_directories() {
        let dir = tempfile::tempdir().unwrap();
        let error = AppSource::resolve(dir.path().to_str(), None, None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("does not contain a file named 'spin.toml'"),
            "{error}"
        );
        std::fs::write(dir.path().join("spin.toml"), "").unwrap();
        assert_eq!(
            AppSource::resolve(dir.path().to_str(), None, None).unwrap(),
            AppSource::Manifest(dir.path().join("spin.toml"))
        );
        let error = AppSource::resolve(Some("nowhere/app.toml"), None, None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("use the `--from-registry` option"),
            "{error}"
        );
        assert_eq!(
            AppSource::resolve(None, None, Some("acme/app")).unwrap(),
            AppSource::Registry("acme/app".into())
        );
    }
}
