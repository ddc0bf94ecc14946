//! `greeter-host up`: the command line (Spin's flag names where Spin has them) and the
//! start-up sequence that turns a manifest into a serving host.

use crate::capabilities::key_value::Stores;
use crate::capabilities::outbound_http::AllowedHosts;
use crate::capabilities::variables::{AppVariables, ComponentVariables, Template};
use crate::compile_cache::load_component;
use crate::engine::{EngineLimits, build_engine};
use crate::manifest::App;
use crate::metrics::Metrics;
use crate::runtime::{ComponentContext, Runtime};
use crate::runtime_config::RuntimeConfig;
use crate::server::routing::{Router, WELL_KNOWN_PREFIX};
use crate::server::{Server, ServerLimits};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Parser)]
#[command(
    version,
    about = "Runs Spin HTTP apps from their spin.toml on wasmtime"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the application, like `spin up`.
    Up(UpArgs),
}

#[derive(Parser)]
pub struct UpArgs {
    /// The application manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    manifest: PathBuf,
    /// Address to serve the application on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Spin runtime config (key-value stores).
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Where store `default` and the compile cache live [default: .greeter beside the manifest].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Environment variables for every component, KEY=VALUE.
    #[arg(short = 'e', long = "env", value_parser = parse_key_value)]
    env: Vec<(String, String)>,
    /// Serve Prometheus metrics at /metrics on this address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Wall-clock deadline per request (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Linear memory per instance (e.g. 128MiB).
    #[arg(long, default_value = "128MiB", value_parser = parse_bytes)]
    max_memory: usize,
    /// Instances alive at once; further requests wait for a free one.
    #[arg(long, default_value_t = 512)]
    max_instances: u32,
    /// How long a request may wait for a free instance before it gets 503.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    queue_timeout: Duration,
    /// Largest request body accepted; larger ones get 413 before any guest runs.
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    max_request_body: usize,
    /// Time a client has to send its request headers.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// On SIGTERM/SIGINT, time in-flight requests get to finish (e.g. 20s).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    drain_timeout: Duration,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

pub fn run() -> Result<()> {
    let Command::Up(args) = Cli::parse().command;
    init_logging(args.log_format);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(up(args))
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn up(args: UpArgs) -> Result<()> {
    let app = App::load(&args.manifest)?;
    tracing::info!(app = %app.name, version = %app.version, "loading");
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| app.dir.join(".greeter"));
    let runtime_config = match &args.runtime_config_file {
        Some(path) => RuntimeConfig::load(path)?,
        None => RuntimeConfig::default(),
    };
    let declared = app
        .variables
        .iter()
        .map(|(name, decl)| (name.as_str(), decl.default.as_deref()));
    let variables = AppVariables::resolve(declared, |key| std::env::var(key).ok())?;
    let stores = Arc::new(Stores::open(&runtime_config.key_value_stores, &state_dir)?);
    let engine = build_engine(&EngineLimits {
        max_instances: args.max_instances,
        max_memory: args.max_memory,
    })?;
    let mut runtime = Runtime::new(
        engine.clone(),
        stores,
        args.max_instances,
        args.queue_timeout,
    );

    // Each component a trigger names is compiled (or loaded from cache) and linked once.
    let mut indices: BTreeMap<&str, usize> = BTreeMap::new();
    for trigger in &app.http_triggers {
        let id = trigger.component.as_str();
        if indices.contains_key(id) {
            continue;
        }
        let decl = &app.components[id];
        if !decl.source.exists() {
            let hint = decl
                .build_command
                .as_deref()
                .map_or(String::new(), |c| format!(": build it with `{c}`"));
            bail!(
                "component `{id}`: {} does not exist{hint}",
                decl.source.display()
            );
        }
        let component = load_component(&engine, &decl.source, &state_dir.join("cache"))
            .with_context(|| format!("component `{id}`"))?;
        let allowed: Vec<String> = decl
            .allowed_outbound_hosts
            .iter()
            .map(|entry| Template::parse(entry).map(|t| t.render(&variables)))
            .collect::<Result<_>>()?;
        let context = ComponentContext {
            id: id.to_string(),
            variables: Arc::new(ComponentVariables::render(id, &decl.variables, &variables)?),
            allowed_hosts: Arc::new(
                AllowedHosts::parse(&allowed)
                    .with_context(|| format!("component `{id}`: allowed_outbound_hosts"))?,
            ),
            granted_stores: decl.key_value_stores.clone().into(),
            environment: decl
                .environment
                .clone()
                .into_iter()
                .chain(args.env.iter().cloned())
                .collect(),
        };
        indices.insert(id, runtime.add_component(&component, context)?);
    }
    let (router, duplicates) = Router::build(app.http_triggers.iter().filter_map(|t| {
        let id = t.component.as_str();
        Some((t.route.as_deref()?, indices[id], id))
    }))?;
    // Spin's messages: duplicates and reserved routes are reported, not refused.
    if !duplicates.is_empty() {
        tracing::error!("The following component routes are duplicates and will never be used:");
        for duplicate in &duplicates {
            tracing::error!(
                "  {}: {} (duplicate of {})",
                duplicate.replaced,
                duplicate.route,
                duplicate.effective
            );
        }
    }
    if router.contains_reserved_route() {
        tracing::error!(
            "Routes under {WELL_KNOWN_PREFIX} are handled by the Spin runtime and will never be reached"
        );
    }

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr()?;
    print_routes(address, &router, &indices);
    let metrics = Arc::new(Metrics::default());
    if let Some(metrics_address) = args.metrics_listen {
        serve_metrics(metrics_address, metrics.clone()).await?;
    }
    let server = Arc::new(Server {
        runtime,
        router,
        metrics,
        limits: ServerLimits {
            max_request_body: args.max_request_body,
            header_read_timeout: args.header_read_timeout,
            body_read_timeout: args.request_timeout,
            request_timeout: args.request_timeout,
            drain_timeout: args.drain_timeout,
        },
        app_info: app_info(&app),
    });
    server.serve(listener, shutdown_signal()).await;
    Ok(())
}

/// What `spin up` prints, so scripts and people find the address the same way.
fn print_routes(address: SocketAddr, router: &Router, indices: &BTreeMap<&str, usize>) {
    println!("Serving http://{address}");
    println!("Available Routes:");
    for (route, index) in router.routes() {
        let id = indices
            .iter()
            .find(|(_, i)| **i == index)
            .map_or("?", |(id, _)| id);
        println!("  {id}: http://{address}{route}");
    }
}

/// `/.well-known/spin/info`, as Spin writes it: the name, and the version when there is one.
fn app_info(app: &App) -> String {
    let mut info = serde_json::json!({ "name": app.name });
    if !app.version.is_empty() {
        info["version"] = app.version.clone().into();
    }
    serde_json::to_string_pretty(&info).expect("a JSON value serialises")
}

async fn serve_metrics(address: SocketAddr, metrics: Arc<Metrics>) -> Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    println!("Metrics on http://{}/metrics", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let metrics = metrics.clone();
            let service = hyper::service::service_fn(move |request| {
                let metrics = metrics.clone();
                async move { metrics.serve_http(request).await }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// `30s`, `500ms`, `2m`, or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "" | "s" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("invalid duration {text:?}: use ms, s or m")),
    }
}

/// `128MiB`, `64KiB`, `1GiB`, or a bare number of bytes.
fn parse_bytes(text: &str) -> Result<usize, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    let scale = match unit {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return Err(format!("invalid size {text:?}: use B, KiB, MiB or GiB")),
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("2h").is_err());
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("128MiB"), Ok(128 << 20));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64KiB"), Ok(64 << 10));
        assert!(parse_bytes("1MB").is_err());
        assert!(parse_bytes("99999999999999999999GiB").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_value("A=b=c"), Ok(("A".into(), "b=c".into())));
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
