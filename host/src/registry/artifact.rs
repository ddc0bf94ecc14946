//! Spin's artifact layout (Spin 3.3 to 3.6, `crates/oci`): an OCI image manifest whose layers
//! are each component's Wasm, in component order and without duplicates, then the locked app
//! as JSON; a config that names the locked app's digest; annotations from the app's metadata.
//! Component sources in the pushed locked app are digests (with the bytes inline up to
//! [`INLINE_MAX`]). What Spin writes beyond that (file layers, archives, composed
//! dependencies) needs features greeter-host refuses when it locks a manifest.

use crate::app::locked::{ContentRef, LockedApp};
use anyhow::{Context, Result, bail};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

pub const WASM_LAYER: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// What `wkg` writes for Wasm; Spin reads it as Wasm too.
pub const WASM_LAYER_WKG: &str = "application/wasm";
pub const LOCKED_APP_LAYER: &str = "application/vnd.fermyon.spin.application.v1+config";
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const IMAGE_MANIFESTS: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// The config label that makes each app's config (and so its image id) unique.
const LOCKED_APP_DIGEST_LABEL: &str = "com.fermyon.spin.lockedAppDigest";
/// Content up to this many bytes is also written inline in the locked app, as Spin does.
pub const INLINE_MAX: usize = 128;

/// A layer of a pulled manifest, by what Spin does with it.
pub enum ManifestLayer {
    Wasm(OciDescriptor),
    Locked(OciDescriptor),
    /// Files, archives of files, or a type Spin does not know: kept under `data/`.
    Data(OciDescriptor),
}

impl ManifestLayer {
    pub fn descriptor(&self) -> &OciDescriptor {
        match self {
            ManifestLayer::Wasm(d) | ManifestLayer::Locked(d) | ManifestLayer::Data(d) => d,
        }
    }
}

/// A pulled manifest, read.
pub struct Artifact {
    pub layers: Vec<ManifestLayer>,
}

/// A blob to push, with its descriptor.
pub struct Blob {
    pub descriptor: OciDescriptor,
    pub bytes: bytes::Bytes,
}

/// What `push` sends: the layers, the config, the manifest naming them.
pub struct Built {
    layers: Vec<Blob>,
    config: Blob,
    pub manifest: OciImageManifest,
}

impl Built {
    /// Layers first, then the config, as Spin uploads them.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        self.layers.iter().chain([&self.config])
    }
}

pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// Whether `digest` is one this host computes (`sha256:` and 64 lowercase hex digits): the
/// only digests it checks blobs against, and the only ones it lets name a file in the cache
/// (a digest comes from the registry, and `/dev/zero` or `../x` must never become a path).
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A pulled blob is what its descriptor says, in size and digest.
pub fn check_blob(descriptor: &OciDescriptor, bytes: &[u8]) -> Result<()> {
    let digest = digest_of(bytes);
    if digest != descriptor.digest || bytes.len() as i64 != descriptor.size {
        bail!(
            "layer {} is truncated or corrupt: {} bytes of digest {digest}, where the manifest says {} bytes",
            descriptor.digest,
            bytes.len(),
            descriptor.size
        );
    }
    Ok(())
}

/// A source in the cache, as the locked app of a pulled app names it.
pub fn local_content(path: &Path) -> Result<ContentRef> {
    let url = url::Url::from_file_path(path)
        .map_err(|()| anyhow::anyhow!("{} is not an absolute path", path.display()))?;
    Ok(ContentRef {
        source: Some(url.to_string()),
        ..ContentRef::default()
    })
}

impl Artifact {
    pub fn read(manifest: &[u8]) -> Result<Artifact> {
        let value: Value = serde_json::from_slice(manifest).context("the manifest is not JSON")?;
        if value.get("schemaVersion") != Some(&Value::from(2)) {
            bail!("the manifest's schemaVersion is not 2");
        }
        if let Some(media_type) = value.get("mediaType").and_then(Value::as_str)
            && !IMAGE_MANIFESTS.contains(&media_type)
        {
            bail!("its manifest is a {media_type}, not an image manifest");
        }
        let manifest: OciImageManifest =
            serde_json::from_value(value).context("the manifest is not an OCI image manifest")?;
        let mut layers: Vec<ManifestLayer> = manifest
            .layers
            .into_iter()
            .map(|layer| match layer.media_type.as_str() {
                WASM_LAYER | WASM_LAYER_WKG => ManifestLayer::Wasm(layer),
                LOCKED_APP_LAYER => ManifestLayer::Locked(layer),
                _ => ManifestLayer::Data(layer),
            })
            .collect();
        if !layers.iter().any(|l| matches!(l, ManifestLayer::Locked(_))) {
            // Apps pushed by older Spin versions carry the locked app as the config, which
            // Spin 3.x still reads.
            if manifest.config.media_type != LOCKED_APP_LAYER {
                bail!("it has no layer of type {LOCKED_APP_LAYER}");
            }
            layers.push(ManifestLayer::Locked(manifest.config));
        }
        if let Some(layer) = layers
            .iter()
            .find(|layer| !is_sha256_digest(&layer.descriptor().digest))
        {
            bail!(
                "its layer digest {:?} is not sha256:<64 hex digits>",
                layer.descriptor().digest
            );
        }
        Ok(Artifact { layers })
    }

    /// Fails unless `digest` is one of the manifest's layers.
    pub fn check_layer(&self, digest: &str) -> Result<()> {
        if !self.layers.iter().any(|l| l.descriptor().digest == digest) {
            bail!("its digest {digest:?} is not a layer of the manifest");
        }
        Ok(())
    }

    /// Spin's artifact for a locked local app (sources are `file://` URLs).
    pub fn build(local: &LockedApp, annotations: BTreeMap<String, String>) -> Result<Built> {
        let mut pushed = local.clone();
        pushed.metadata.remove("origin");
        let mut layers: Vec<Blob> = Vec::new();
        for component in &mut pushed.components {
            let path = component
                .source
                .content
                .local_file()
                .with_context(|| format!("component {:?}", component.id))?;
            let wasm =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            check_is_component(&wasm).with_context(|| {
                format!(
                    "Component {} source is not a valid .wasm file",
                    component.id
                )
            })?;
            let blob = blob(WASM_LAYER, wasm);
            component.source.content = ContentRef {
                source: None,
                inline: (blob.bytes.len() <= INLINE_MAX).then(|| blob.bytes.to_vec()),
                digest: Some(blob.descriptor.digest.clone()),
            };
            // The first of identical layers is kept.
            if !layers
                .iter()
                .any(|l| same_layer(&l.descriptor, &blob.descriptor))
            {
                layers.push(blob);
            }
        }
        let locked = blob(LOCKED_APP_LAYER, pushed.to_json());
        // Spin's config, byte for byte.
        let config = blob(
            IMAGE_CONFIG,
            format!(
                r#"{{"architecture":"wasm","os":"wasip1","config":{{"Labels":{{"{LOCKED_APP_DIGEST_LABEL}":"{}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#,
                locked.descriptor.digest
            )
            .into_bytes(),
        );
        layers.push(locked);
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: None,
            config: config.descriptor.clone(),
            layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
            subject: None,
            artifact_type: None,
            annotations: Some(all_annotations(&pushed.metadata, annotations)),
        };
        Ok(Built {
            layers,
            config,
            manifest,
        })
    }
}

fn blob(media_type: &str, bytes: Vec<u8>) -> Blob {
    Blob {
        descriptor: OciDescriptor {
            media_type: media_type.to_string(),
            digest: digest_of(&bytes),
            size: bytes.len() as i64,
            urls: None,
            annotations: None,
            artifact_type: None,
        },
        bytes: bytes.into(),
    }
}

fn same_layer(a: &OciDescriptor, b: &OciDescriptor) -> bool {
    a.digest == b.digest && a.media_type == b.media_type
}

/// Spin pushes components unchanged and converts core modules first (with its own
/// componentizer, which greeter-host does not have): only components are pushed here.
fn check_is_component(wasm: &[u8]) -> Result<()> {
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
            bail!("it is a core module; greeter-host pushes components only")
        }
        _ => bail!("it does not start with the Wasm magic number"),
    }
}

/// `--annotation` pairs first; then, where not given, Spin's inferred ones.
fn all_annotations(
    metadata: &BTreeMap<String, Value>,
    mut given: BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let text = |key: &str| {
        metadata
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let authors = metadata
        .get("authors")
        .and_then(Value::as_array)
        .map(|authors| {
            authors
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|authors| !authors.is_empty());
    let inferred = [
        ("org.opencontainers.image.authors", authors),
        ("org.opencontainers.image.title", text("name")),
        ("org.opencontainers.image.description", text("description")),
        ("org.opencontainers.image.version", text("version")),
        (
            "org.opencontainers.image.created",
            Some(chrono::Utc::now().to_rfc3339()),
        ),
    ];
    for (key, value) in inferred {
        if let Some(value) = value {
            given.entry(key.to_string()).or_insert(value);
        }
    }
    given
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::manifest;

    /// A component of 215 bytes: the smallest spin-sdk component is far larger, but the
    /// layout does not care what the bytes do.
    fn component(dir: &Path, name: &str, size: usize) -> Vec<u8> {
        let mut wasm = vec![0, b'a', b's', b'm', 0x0d, 0, 1, 0];
        wasm.resize(size, 7);
        std::fs::write(dir.join(name), &wasm).unwrap();
        wasm
    }

    fn lock(dir: &Path, components: &[(&str, &str)]) -> LockedApp {
        let mut text = String::from(
            "spin_manifest_version = 2\n[application]\nname = \"greeter\"\nversion = \"0.1.0\"\n\
             authors = [\"A\", \"B\"]\ndescription = \"Hello world\"\n",
        );
        for (id, file) in components {
            text += &format!(
                "[[trigger.http]]\nroute = \"/{id}/...\"\ncomponent = \"{id}\"\n\
                 [component.{id}]\nsource = \"{file}\"\n"
            );
        }
        manifest::parse(&text, dir).unwrap()
    }

    #[test]
    fn the_layout_is_spins() {
        let dir = tempfile::tempdir().unwrap();
        let wasm = component(dir.path(), "a.wasm", 215);
        let built =
            Artifact::build(&lock(dir.path(), &[("a", "a.wasm")]), BTreeMap::new()).unwrap();
        let manifest = &built.manifest;
        assert_eq!(manifest.media_type, None);
        assert_eq!(manifest.artifact_type, None);
        let types: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect();
        assert_eq!(types, [WASM_LAYER, LOCKED_APP_LAYER]);
        assert_eq!(manifest.layers[0].digest, digest_of(&wasm));
        let locked_layer = &built.layers[1];
        let pushed = LockedApp::from_json(&locked_layer.bytes).unwrap();
        assert_eq!(
            pushed.components[0].source.content,
            ContentRef {
                source: None,
                inline: None,
                digest: Some(digest_of(&wasm))
            }
        );
        assert!(!pushed.metadata.contains_key("origin"));
        assert_eq!(
            std::str::from_utf8(&built.config.bytes).unwrap(),
            format!(
                r#"{{"architecture":"wasm","os":"wasip1","config":{{"Labels":{{"com.fermyon.spin.lockedAppDigest":"{}"}}}},"rootfs":{{"type":"layers","diff_ids":[]}}}}"#,
                locked_layer.descriptor.digest
            )
        );
        let annotations = manifest.annotations.as_ref().unwrap();
        assert_eq!(annotations["org.opencontainers.image.authors"], "A, B");
        assert_eq!(annotations["org.opencontainers.image.title"], "greeter");
        assert_eq!(annotations["org.opencontainers.image.version"], "0.1.0");
        assert_eq!(
            annotations["org.opencontainers.image.description"],
            "Hello world"
        );
        assert!(annotations["org.opencontainers.image.created"].ends_with("+00:00"));
    }

    #[test]
    fn identical_components_share_a_layer_and_small_ones_are_inline_too() {
        let dir = tempfile::tempdir().unwrap();
        component(dir.path(), "big.wasm", 300);
        let small = component(dir.path(), "small.wasm", INLINE_MAX);
        std::fs::copy(dir.path().join("big.wasm"), dir.path().join("twin.wasm")).unwrap();
        let app = lock(
            dir.path(),
            &[
                ("big", "big.wasm"),
                ("small", "small.wasm"),
                ("twin", "twin.wasm"),
            ],
        );
        let given = BTreeMap::from([(
            "org.opencontainers.image.title".to_string(),
            "mine".to_string(),
        )]);
        let built = Artifact::build(&app, given).unwrap();
        assert_eq!(built.manifest.layers.len(), 3, "big, small, locked app");
        let pushed = LockedApp::from_json(&built.layers[2].bytes).unwrap();
        assert_eq!(pushed.components[1].source.content.inline, Some(small));
        assert_eq!(pushed.components[0].source.content.inline, None);
        assert_eq!(
            built.manifest.annotations.unwrap()["org.opencontainers.image.title"],
            "mine"
        );
    }

    #[test]
    fn what_is_not_a_component_is_not_pushed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("core.wasm"),
            [0, b'a', b's', b'm', 1, 0, 0, 0],
        )
        .unwrap();
        let error = Artifact::build(&lock(dir.path(), &[("a", "core.wasm")]), BTreeMap::new())
            .err()
            .unwrap();
        assert!(format!("{error:#}").contains("core module"), "{error:#}");
    }

    #[test]
    fn pulled_manifests_must_be_spin_apps() {
        let image = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:00","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:01","size":1}]}"#;
        let error = Artifact::read(image).err().unwrap().to_string();
        assert!(
            error.contains("no layer of type application/vnd.fermyon.spin.application.v1+config"),
            "{error}"
        );
        let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
        let error = Artifact::read(index).err().unwrap().to_string();
        assert!(error.contains("not an image manifest"), "{error}");
    }

    /// A digest from the registry names a cache file only when it is a plain SHA-256, and a
    /// component's only when it is one of the layers just checked.
    #[test]
    fn digests_must_be_sha256_and_a_component_one_of_the_layers() {
        let manifest = |digest: &str| {
            format!(
                r#"{{"schemaVersion":2,"config":{{"mediaType":"{IMAGE_CONFIG}","digest":"sha256:00","size":1}},"layers":[{{"mediaType":"{LOCKED_APP_LAYER}","digest":"{digest}","size":1}}]}}"#
            )
        };
        let good = digest_of(b"locked");
        let artifact = Artifact::read(manifest(&good).as_bytes()).unwrap();
        assert!(artifact.check_layer(&good).is_ok());
        let elsewhere = digest_of(b"elsewhere");
        let error = artifact.check_layer(&elsewhere).unwrap_err().to_string();
        assert!(error.contains("is not a layer of the manifest"), "{error}");
        for bad in [
            "/dev/zero",
            "../../x",
            "sha256:ABC",
            "sha512:00",
            &good.to_uppercase(),
        ] {
            let error = Artifact::read(manifest(bad).as_bytes()).err().unwrap();
            assert!(
                error.to_string().contains("is not sha256:"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn an_older_spin_app_carries_its_locked_app_as_the_config() {
        let locked = digest_of(b"locked");
        let wasm = digest_of(b"wasm");
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{LOCKED_APP_LAYER}","digest":"{locked}","size":6}},"layers":[{{"mediaType":"{WASM_LAYER}","digest":"{wasm}","size":4}}]}}"#
        );
        let artifact = Artifact::read(manifest.as_bytes()).unwrap();
        let found = artifact.layers.iter().find_map(|layer| match layer {
            ManifestLayer::Locked(descriptor) => Some(descriptor.digest.clone()),
            _ => None,
        });
        assert_eq!(found, Some(locked));
        assert!(artifact.check_layer(&wasm).is_ok());
    }

    #[test]
    fn blobs_must_match_their_descriptor() {
        let layer = blob(WASM_LAYER, b"wasm".to_vec());
        assert!(check_blob(&layer.descriptor, b"wasm").is_ok());
        let error = check_blob(&layer.descriptor, b"was")
            .unwrap_err()
            .to_string();
        assert!(error.contains("truncated or corrupt"), "{error}");
    }
}
