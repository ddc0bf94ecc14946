//! Spin apps in OCI registries, stored exactly as Spin stores them: pushed by `greeter-host
//! registry push` or `spin registry push`, run by `greeter-host up -f <reference>`, `spin up`
//! or SpinKube. The wire protocol is `oci-client`'s; this module adds Spin's artifact layout
//! ([`artifact`]), Spin's cache ([`cache`]) and Spin's credentials ([`auth`]).
//!
//! Where this differs from Spin 3.6, it is stricter or works offline: every blob is checked
//! against its digest (Spin checks none), a reference whose registry cannot be reached runs
//! from the cache when the cache has it (Spin fails), and `-k` also works for `login`.

pub mod artifact;
pub mod auth;
pub mod cache;

use crate::app::locked::LockedApp;
use anyhow::{Context, Result, bail};
use artifact::{Artifact, ManifestLayer};
use cache::Cache;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How long to wait for a registry's TCP (and TLS) connection, and then for each read.
const REGISTRY_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const REGISTRY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The largest layer pulled: far above any component, far below what would exhaust a pod.
const MAX_LAYER_BYTES: usize = 1 << 30;
/// What a layer's buffer starts with: a component of this size or less is read without
/// copying, and a manifest's claim alone reserves no more.
const INITIAL_LAYER_CAPACITY: usize = 16 << 20;

/// The manifest types a registry may answer with; anything but an image manifest is refused
/// after the answer, with a message that says what it was.
const ACCEPTED_MANIFESTS: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// How to reach registries and where to keep what is pulled: Spin's flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RegistryOptions {
    /// Talk plain HTTP to the registry (what Spin's -k does), for a registry on this machine
    #[arg(short = 'k', long)]
    pub insecure: bool,
    /// Cache directory for downloaded components [default: Spin's, $XDG_CACHE_HOME/spin or
    /// ~/.cache/spin]
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

pub struct Registry {
    client: Client,
    cache: Cache,
}

impl Registry {
    pub fn new(options: &RegistryOptions) -> Result<Registry> {
        let config = ClientConfig {
            protocol: if options.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // A registry that accepts and never answers (or a dropped route) must not hang
            // the start: it fails, or falls back to the cache.
            connect_timeout: Some(REGISTRY_CONNECT_TIMEOUT),
            read_timeout: Some(REGISTRY_READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config).context("cannot set up the registry client")?;
        Ok(Registry {
            client,
            cache: Cache::new(options.cache_dir.clone())?,
        })
    }

    /// Where greeter-host keeps compiled components of registry apps: beside Spin's cache.
    pub fn compile_cache(&self) -> PathBuf {
        self.cache.compile_dir()
    }

    /// Pulls the app `reference` names into the cache and returns its locked app, component
    /// sources pointing into the cache. With the registry unreachable, a reference pulled
    /// before runs from the cache.
    pub async fn pull(&self, reference: &str) -> Result<LockedApp> {
        let reference = parse_reference(reference)?;
        let auth = auth::credentials(reference.resolve_registry());
        let manifest = match self.fetch_manifest(&reference, &auth).await {
            Ok(manifest) => manifest,
            Err(error) => match self.cache.manifest(&reference) {
                Some(cached) if is_unreachable(&error) => {
                    tracing::warn!(
                        "the registry is unreachable ({error:#}); running {} from the cache",
                        reference.whole()
                    );
                    cached
                }
                _ => return Err(error),
            },
        };
        let artifact = Artifact::read(&manifest)
            .with_context(|| format!("{} is not a Spin application", reference.whole()))?;
        let locked_json = self.fetch_layers(&reference, &artifact).await?;
        self.cache
            .store_manifest(&reference, &manifest, &locked_json)?;
        let mut locked = LockedApp::from_json(&locked_json)?;
        locked.metadata.insert(
            "origin".into(),
            format!("vnd.fermyon.origin-oci:{}", reference.whole()).into(),
        );
        for component in &mut locked.components {
            let digest = component.source.content.digest.clone().with_context(|| {
                format!(
                    "component {:?}: content missing expected digest",
                    component.id
                )
            })?;
            // Only a layer this pull checked: never another file of the cache, or elsewhere.
            artifact
                .check_layer(&digest)
                .with_context(|| format!("component {:?}", component.id))?;
            let path = self.cache.wasm_file(&digest)?;
            component.source.content = artifact::local_content(&path)?;
        }
        Ok(locked)
    }

    async fn fetch_manifest(&self, reference: &Reference, auth: &RegistryAuth) -> Result<Vec<u8>> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(reference, auth, ACCEPTED_MANIFESTS)
            .await
            .with_context(|| {
                format!(
                    "cannot pull Spin application from registry reference {:?}",
                    reference.whole()
                )
            })?;
        if let Some(wanted) = reference.digest() {
            let got = artifact::digest_of(&bytes);
            if got != wanted {
                bail!(
                    "the registry answered {} with a manifest of digest {got} (it says {digest})",
                    reference.whole()
                );
            }
        }
        Ok(bytes.to_vec())
    }

    /// Every layer not yet in the cache, checked against its digest; returns the locked app.
    async fn fetch_layers(&self, reference: &Reference, artifact: &Artifact) -> Result<Vec<u8>> {
        let mut locked_json = None;
        for layer in &artifact.layers {
            let descriptor = layer.descriptor();
            if let ManifestLayer::Locked(_) = layer {
                if let Some(cached) = self.cache.blob(&descriptor.digest) {
                    locked_json = Some(cached);
                    continue;
                }
            } else if self.cache.has_blob(&descriptor.digest) {
                continue;
            }
            let bytes = self
                .pull_sized(reference, descriptor)
                .await
                .with_context(|| format!("cannot pull layer {}", descriptor.digest))?;
            artifact::check_blob(descriptor, &bytes)?;
            self.cache.store_blob(layer, &bytes)?;
            if let ManifestLayer::Locked(_) = layer {
                locked_json = Some(bytes);
            }
        }
        locked_json.context("the artifact has no Spin application layer")
    }

    /// A blob's bytes, no more than its descriptor's size: a registry (or anyone on a
    /// plain-HTTP path to it) cannot make the host buffer more than the manifest said.
    async fn pull_sized(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
    ) -> Result<Vec<u8>> {
        let size = usize::try_from(descriptor.size)
            .ok()
            .filter(|size| *size <= MAX_LAYER_BYTES)
            .with_context(|| {
                format!(
                    "its size {} is not from 0 to {MAX_LAYER_BYTES} bytes",
                    descriptor.size
                )
            })?;
        let mut stream = self
            .client
            .pull_blob_stream(reference, descriptor)
            .await?
            .stream;
        // Grown as bytes come, not reserved for what the manifest claims.
        let mut bytes = Vec::with_capacity(size.min(INITIAL_LAYER_CAPACITY));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if bytes.len() + chunk.len() > size {
                bail!("the registry sent more than the manifest's {size} bytes");
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    }

    /// Pushes `locked` (a local app) as `reference`; returns the manifest's digest when the
    /// registry gives it.
    pub async fn push(
        &self,
        locked: &LockedApp,
        reference: &str,
        annotations: BTreeMap<String, String>,
    ) -> Result<Option<String>> {
        let reference = parse_reference(reference)?;
        let auth = auth::credentials(reference.resolve_registry());
        let built = Artifact::build(locked, annotations)?;
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &auth)
            .await;
        for blob in built.blobs() {
            self.client
                .push_blob(&reference, blob.bytes.clone(), &blob.descriptor.digest)
                .await
                .with_context(|| format!("cannot push layer {}", blob.descriptor.digest))?;
        }
        let manifest = OciManifest::Image(built.manifest);
        let url = self
            .client
            .push_manifest(&reference, &manifest)
            .await
            .context("cannot push the manifest")?;
        Ok(url
            .rsplit('/')
            .next()
            .filter(|last| last.contains(':'))
            .map(str::to_string))
    }
}

/// `ghcr.io/org/app:v1`, Docker's rules (a first part without `.` or `:` is a path on
/// docker.io); no tag means `latest`.
pub fn parse_reference(text: &str) -> Result<Reference> {
    text.parse::<Reference>()
        .with_context(|| format!("cannot parse reference {text}"))
}

/// No connection to the registry at all (refused, unroutable, timed out), as opposed to an
/// answer from it or a TLS failure, which must not fall back to the cache.
fn is_unreachable(error: &anyhow::Error) -> bool {
    use std::io::ErrorKind::{
        ConnectionRefused, HostUnreachable, NetworkUnreachable, NotConnected, TimedOut,
    };
    error.chain().any(|cause| {
        let io = cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable | NotConnected | TimedOut
            )
        });
        // The client's own timeouts: no answer at all.
        io || cause
            .downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
    })
}
