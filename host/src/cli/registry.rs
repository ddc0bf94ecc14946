//! `greeter-host registry push | pull | login`: Spin's `spin registry` commands, with its
//! flags and its output lines, so scripts written for one work with the other.

use super::source::{AppSource, DEFAULT_MANIFEST};
use super::units::parse_key_value;
use super::{LogFormat, block_on, init_logging};
use crate::app::manifest;
use crate::registry::{Registry, RegistryOptions, auth};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Push the app of a spin.toml to a registry, as `spin registry push` does.
    Push(PushArgs),
    /// Pull an app from a registry into the cache, as `spin registry pull` does.
    Pull(PullArgs),
    /// Store credentials for a registry, as `spin registry login` does.
    Login(LoginArgs),
}

#[derive(Args)]
pub struct PushArgs {
    /// The manifest, or a directory holding spin.toml.
    #[arg(short = 'f', long = "from", alias = "file", default_value = DEFAULT_MANIFEST)]
    from: PathBuf,
    #[command(flatten)]
    registry: RegistryOptions,
    /// Run each component's build command first.
    #[arg(long, env = "SPIN_ALWAYS_BUILD")]
    build: bool,
    /// An annotation of the pushed manifest, KEY=VALUE (repeat the flag); these win over the
    /// ones taken from the app's metadata.
    #[arg(long = "annotation", value_parser = parse_key_value)]
    annotations: Vec<(String, String)>,
    /// Where to push, e.g. ghcr.io/org/app:v1.
    reference: String,
}

#[derive(Args)]
pub struct PullArgs {
    #[command(flatten)]
    registry: RegistryOptions,
    /// What to pull, e.g. ghcr.io/org/app:v1.
    reference: String,
}

#[derive(Args)]
pub struct LoginArgs {
    #[arg(short = 'u', long)]
    username: String,
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input, all of it as it is.
    #[arg(long)]
    password_stdin: bool,
    /// Talk plain HTTP to the registry, for a registry on this machine.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// The registry, e.g. ghcr.io.
    server: String,
}

pub fn run(command: RegistryCommand) -> Result<()> {
    init_logging(LogFormat::Text, None);
    block_on(async {
        match command {
            RegistryCommand::Push(args) => push(args).await,
            RegistryCommand::Pull(args) => pull(args).await,
            RegistryCommand::Login(args) => login(args).await,
        }
    })
}

async fn push(args: PushArgs) -> Result<()> {
    let AppSource::Manifest(path) = AppSource::resolve(None, Some(&args.from), None)? else {
        unreachable!("--from-file resolves to a manifest");
    };
    if args.build {
        build(&path)?;
    }
    let locked = manifest::lock(&path)?;
    let registry = Registry::new(&args.registry)?;
    let digest = registry
        .push(
            &locked,
            &args.reference,
            args.annotations.into_iter().collect(),
        )
        .await
        .context("cannot push Spin application")?;
    match digest {
        Some(digest) => println!("Pushed with digest {digest}"),
        None => println!("Pushed; the registry did not return the digest"),
    }
    Ok(())
}

/// Each component's `[component.<id>.build]` command, in its working directory.
fn build(path: &Path) -> Result<()> {
    let app = crate::app::App::load(path)?;
    let dir = manifest::directory_of(path)?;
    for (id, component) in &app.components {
        let Some(command) = &component.build_command else {
            continue;
        };
        println!("Building component {id} with `{command}`");
        let status = std::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(&dir)
            .status()
            .with_context(|| format!("cannot run the build of component {id}"))?;
        if !status.success() {
            bail!("Build command for component {id} failed with status {status}");
        }
    }
    println!("Finished building all Spin components");
    Ok(())
}

async fn pull(args: PullArgs) -> Result<()> {
    Registry::new(&args.registry)?
        .pull(&args.reference)
        .await
        .context("cannot pull Spin application")?;
    println!("Successfully pulled the app from the registry");
    Ok(())
}

async fn login(args: LoginArgs) -> Result<()> {
    let password = match (args.password, args.password_stdin) {
        (Some(password), _) => password,
        (None, true) => {
            let mut password = String::new();
            std::io::stdin()
                .read_to_string(&mut password)
                .context("cannot read the password from standard input")?;
            password
        }
        (None, false) => bail!("give the password with --password or --password-stdin"),
    };
    auth::login(&args.server, &args.username, &password, args.insecure).await?;
    println!(
        "Successfully logged in as {} to registry {}",
        args.username, args.server
    );
    Ok(())
}
