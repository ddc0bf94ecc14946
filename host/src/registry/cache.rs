//! Spin's registry cache, shared with Spin (`crates/loader/src/cache.rs`): under the root
//! (`--cache-dir`, else `$XDG_CACHE_HOME/spin` or `~/.cache/spin`), `registry/wasm/<digest>`
//! and `registry/data/<digest>` hold blobs by content, and
//! `registry/manifests/<registry>/<repository>/<tag>/` a reference's `manifest.json` and its
//! locked app as `config.json`. Every file is written whole (a temporary file, then a
//! rename), and a cached blob counts only when its bytes still match its digest.

use super::artifact::{ManifestLayer, digest_of, is_sha256_digest};
use anyhow::{Context, Result, bail};
use oci_client::Reference;
use std::path::{Path, PathBuf};

/// The root's part when no `--cache-dir` is given: `~/.cache/spin`.
const SPIN_DIR: &str = "spin";
const REGISTRY_DIR: &str = "registry";
/// greeter-host's compiled components of registry apps, beside Spin's `registry/`.
const COMPILE_DIR: &str = "greeter-host";
/// The tag directory of a reference with neither a tag nor a digest, as in Spin.
const DEFAULT_TAG: &str = "latest";

pub struct Cache {
    root: PathBuf,
}

impl Cache {
    pub fn new(root: Option<PathBuf>) -> Result<Cache> {
        let root = match root {
            Some(root) => root,
            None => user_cache_dir()
                .context(
                    "cannot get cache directory: set HOME or XDG_CACHE_HOME, or give --cache-dir",
                )?
                .join(SPIN_DIR),
        };
        Ok(Cache { root })
    }

    pub fn compile_dir(&self) -> PathBuf {
        self.root.join(COMPILE_DIR)
    }

    fn registry(&self) -> PathBuf {
        self.root.join(REGISTRY_DIR)
    }

    fn reference_dir(&self, reference: &Reference) -> PathBuf {
        self.registry()
            .join("manifests")
            .join(reference.registry())
            .join(reference.repository())
            .join(
                reference
                    .tag()
                    .or(reference.digest())
                    .unwrap_or(DEFAULT_TAG),
            )
    }

    /// The manifest cached for `reference`; for a digest reference, that very one, under
    /// whichever tag of the repository it was pulled.
    pub fn manifest(&self, reference: &Reference) -> Option<Vec<u8>> {
        let Some(digest) = reference.digest() else {
            return std::fs::read(self.reference_dir(reference).join("manifest.json")).ok();
        };
        let repository = self.reference_dir(reference);
        std::fs::read_dir(repository.parent()?)
            .ok()?
            .filter_map(|tag| std::fs::read(tag.ok()?.path().join("manifest.json")).ok())
            .find(|bytes| digest_of(bytes) == digest)
    }

    pub fn store_manifest(
        &self,
        reference: &Reference,
        manifest: &[u8],
        locked: &[u8],
    ) -> Result<()> {
        let dir = self.reference_dir(reference);
        write_whole(&dir.join("manifest.json"), manifest)?;
        write_whole(&dir.join("config.json"), locked)
    }

    /// Where a blob of `digest` may be; nowhere for a digest that is not a plain SHA-256
    /// (it comes from the registry, and must not name a path of its own choosing).
    fn blob_paths(&self, digest: &str) -> Vec<PathBuf> {
        if !is_sha256_digest(digest) {
            return Vec::new();
        }
        let registry = self.registry();
        vec![
            registry.join("wasm").join(digest),
            registry.join("data").join(digest),
        ]
    }

    /// A cached blob whose bytes match `digest`.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        self.blob_paths(digest)
            .iter()
            .filter_map(|path| std::fs::read(path).ok())
            .find(|bytes| digest_of(bytes) == digest)
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob(digest).is_some()
    }

    /// Wasm under `wasm/`, everything else under `data/`.
    pub fn store_blob(&self, layer: &ManifestLayer, bytes: &[u8]) -> Result<()> {
        let digest = &layer.descriptor().digest;
        let [wasm, data] = <[PathBuf; 2]>::try_from(self.blob_paths(digest))
            .map_err(|_| anyhow::anyhow!("{digest:?} is not a SHA-256 digest"))?;
        let path = match layer {
            ManifestLayer::Wasm(_) => wasm,
            ManifestLayer::Locked(_) | ManifestLayer::Data(_) => data,
        };
        write_whole(&path, bytes)
    }

    /// The file of a component's Wasm, as Spin looks for it: `wasm/`, then `data/`.
    pub fn wasm_file(&self, digest: &str) -> Result<PathBuf> {
        let found = self
            .blob_paths(digest)
            .into_iter()
            .find(|path| path.exists());
        match found {
            Some(path) => Ok(std::path::absolute(path)?),
            None => bail!("cannot find wasm file for digest {digest}"),
        }
    }
}

/// `$XDG_CACHE_HOME` when it is absolute, else `$HOME/.cache`, as Spin's `dirs` finds it.
fn user_cache_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from);
    xdg.filter(|dir| dir.is_absolute()).or_else(|| {
        std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| PathBuf::from(home).join(".cache"))
    })
}

/// Writes `bytes` to `path` in one step: readers see the old file or the whole new one.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a cache path has a directory")?;
    crate::files::write_whole(path, bytes)
        .with_context(|| format!("cannot write to the cache directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_count_only_when_their_bytes_match() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf())).unwrap();
        let digest = digest_of(b"wasm");
        let wasm = cache.blob_paths(&digest).remove(0);
        write_whole(&wasm, b"was").unwrap();
        assert!(
            !cache.has_blob(&digest),
            "a truncated blob is not a cache hit"
        );
        write_whole(&wasm, b"wasm").unwrap();
        assert!(cache.has_blob(&digest));
        assert_eq!(
            cache.wasm_file(&digest).unwrap(),
            dir.path().join("registry/wasm").join(&digest)
        );
    }

    #[test]
    fn references_have_spins_directories() {
        let cache = Cache::new(Some(PathBuf::from("/c"))).unwrap();
        let tagged: Reference = "localhost:5000/greeter/app:v1".parse().unwrap();
        assert_eq!(
            cache.reference_dir(&tagged),
            Path::new("/c/registry/manifests/localhost:5000/greeter/app/v1")
        );
        // A digest alone is filed under itself: never as `latest`, which a later pull of the
        // bare name would run from the cache when the registry is unreachable.
        let digest = digest_of(b"");
        let pinned: Reference = format!("ghcr.io/a/b@{digest}").parse().unwrap();
        assert_eq!(
            cache.reference_dir(&pinned),
            Path::new("/c/registry/manifests/ghcr.io/a/b").join(&digest)
        );
    }

    #[test]
    fn a_digest_that_is_no_sha256_names_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf())).unwrap();
        for digest in [
            "/dev/zero",
            "../../../etc/passwd",
            "sha256:../x",
            "sha512:00",
        ] {
            assert!(!cache.has_blob(digest), "{digest}");
            assert!(cache.wasm_file(digest).is_err(), "{digest}");
        }
    }

    #[test]
    fn a_read_only_cache_is_a_clear_error() {
        let error = write_whole(Path::new("/proc/greeter-cache/x"), b"x").unwrap_err();
        assert!(
            format!("{error:#}")
                .starts_with("cannot write to the cache directory /proc/greeter-cache"),
            "{error:#}"
        );
    }
}
