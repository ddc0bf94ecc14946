//! `greeter-host up`: Spin's `spin up` flags and environment variables (all that
//! spin-operator passes to an executor image), and the start-up sequence that turns an app,
//! local or from a registry, into a serving host.

use super::source::{AppSource, LoadedApp};
use super::units::{
    VariableSource, parse_bytes, parse_duration, parse_duration_range, parse_key_value,
    parse_listen_address, parse_usize_range, parse_variable_source, read_variables,
};
use super::{LogFormat, block_on, init_logging};
use crate::app::{App, retain_components};
use crate::capabilities::key_value::Stores;
use crate::capabilities::outbound_http::AllowedHosts;
use crate::capabilities::variables::{AppVariables, ComponentVariables, Template};
use crate::compile_cache::load_component;
use crate::engine::{EngineLimits, build_engine};
use crate::metrics::Metrics;
use crate::registry::RegistryOptions;
use crate::runtime::{
    ComponentContext, HttpWorld, InstanceReuse, Range, Runtime, RuntimeLimits, workload,
};
use crate::runtime_config::RuntimeConfig;
use crate::server::routing::{Router, WELL_KNOWN_PREFIX};
use crate::server::{Server, ServerLimits, listener};
use crate::traces::Traces;
use anyhow::{Context, Result, bail};
use clap::Parser;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Spin's fallback for `--component-id`, as SpinKube's shim reads it: ids separated by commas.
const COMPONENTS_TO_RETAIN_VARIABLE: &str = "SPIN_COMPONENTS_TO_RETAIN";

/// Linear memory per instance unless the flag or the runtime config says otherwise (Spin
/// sets no limit of its own).
const DEFAULT_MAX_INSTANCE_MEMORY: usize = 128 << 20;

#[derive(Parser)]
pub struct UpArgs {
    /// The application: a manifest file, a directory holding spin.toml, or a registry
    /// reference [default: spin.toml].
    #[arg(
        short = 'f',
        long = "from",
        group = "source",
        value_name = "APPLICATION"
    )]
    from: Option<String>,
    /// The same as --from, always read as a file or directory.
    #[arg(
        long = "from-file",
        alias = "file",
        group = "source",
        value_name = "PATH"
    )]
    from_file: Option<PathBuf>,
    /// The same as --from, always read as a registry reference.
    #[arg(long = "from-registry", group = "source", value_name = "REFERENCE")]
    from_registry: Option<String>,
    #[command(flatten)]
    registry: RegistryOptions,
    /// Serve only these components (repeat the flag) [default: all; else the
    /// comma-separated SPIN_COMPONENTS_TO_RETAIN].
    #[arg(short = 'c', long = "component-id", value_name = "ID")]
    components: Vec<String>,
    /// Address to serve the application on (port 0 picks a free port).
    #[arg(long, env = "SPIN_HTTP_LISTEN_ADDR", default_value = "127.0.0.1:3000", value_parser = parse_listen_address)]
    listen: SocketAddr,
    /// Spin runtime config: key-value stores, variables providers.
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Where store `default` and the compile cache live [default: .greeter beside a local
    /// manifest; none for a registry app, whose store `default` is then in memory, as in Spin].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Environment variables for every component, KEY=VALUE.
    #[arg(short = 'e', long = "env", value_parser = parse_key_value)]
    env: Vec<(String, String)>,
    /// An app variable, before every provider (repeat the flag; a later value of a name
    /// wins).
    #[arg(long, value_parser = parse_variable_source, value_name = "KEY=VALUE | KEY=@FILE | @FILE.json | @FILE.toml")]
    variable: Vec<VariableSource>,
    /// A key and value to set in store `default` before serving (repeat the flag); an
    /// existing value is overwritten.
    #[arg(long = "key-value", value_parser = parse_key_value, value_name = "KEY=VALUE")]
    key_values: Vec<(String, String)>,
    /// Serve Prometheus metrics at /metrics on this address.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Wall-clock deadline per request (e.g. 30s, 500ms).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Linear memory per instance (e.g. 128MiB, or bytes as spin-operator sets it) [default:
    /// the runtime config's max_instance_memory, else 128MiB].
    #[arg(long = "max-instance-memory", alias = "max-memory", env = "SPIN_MAX_INSTANCE_MEMORY", value_parser = parse_bytes)]
    max_memory: Option<usize>,
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
    /// Requests one `wasi:http@0.3` instance serves before it is dropped, or a range (`1..8`)
    /// each instance draws from [default: 128; a `wasi:http@0.2` instance serves one].
    #[arg(long, value_parser = parse_usize_range)]
    max_instance_reuse_count: Option<Range<usize>>,
    /// Requests one `wasi:http@0.3` instance serves at once, or a range [default: 16].
    #[arg(long, value_parser = parse_usize_range)]
    max_instance_concurrent_reuse_count: Option<Range<usize>>,
    /// How long an idle `wasi:http@0.3` instance is kept for the next request, or a range
    /// (`1..8s`).
    #[arg(long, default_value = "1s", value_parser = parse_duration_range)]
    idle_instance_timeout: Range<Duration>,
    /// On SIGTERM, how long to go on serving new requests before draining: load balancers
    /// and kube-proxy still send to a terminating pod until they have heard of it.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    shutdown_delay: Duration,
    /// Then (or at once on SIGINT), time in-flight requests get to finish.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Threads that serve requests, each with its own connections and its own reused
    /// `wasi:http@0.3` instances [default: the CPUs this process may use].
    #[arg(long)]
    threads: Option<NonZeroUsize>,
}

pub fn run(args: UpArgs) -> Result<()> {
    // First, on the main thread, before any other thread exists (see server::listener).
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
        NonZeroUsize::get,
    );
    let listeners = listener::bind(args.listen, threads)?;
    block_on(async move {
        let traces = Traces::from_env()?;
        init_logging(args.log_format, traces.as_ref());
        let served = up(args, listeners).await;
        if let Some(traces) = traces {
            traces.shutdown().await;
        }
        served
    })
}

impl UpArgs {
    fn source(&self) -> Result<AppSource> {
        AppSource::resolve(
            self.from.as_deref(),
            self.from_file.as_deref(),
            self.from_registry.as_deref(),
        )
    }

    /// `--component-id`, else `SPIN_COMPONENTS_TO_RETAIN`; empty means every component.
    fn retained_components(&self) -> Vec<String> {
        if !self.components.is_empty() {
            return self.components.clone();
        }
        std::env::var(COMPONENTS_TO_RETAIN_VARIABLE)
            .unwrap_or_default()
            .split(',')
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect()
    }
}

async fn up(args: UpArgs, listeners: Vec<std::net::TcpListener>) -> Result<()> {
    let LoadedApp {
        app,
        default_state_dir,
        compile_cache,
    } = args.source()?.load(&args.registry).await?;
    let app = retain_components(app, &args.retained_components())?;
    tracing::info!(app = %app.name, version = %app.version, "loading");
    let runtime_config = match &args.runtime_config_file {
        Some(path) => RuntimeConfig::load(path)?,
        None => RuntimeConfig::default(),
    };
    // The flag, else the runtime config's `state_dir` ("" for none), else the default.
    let state_dir = match (&args.state_dir, &runtime_config.state_dir) {
        (Some(dir), _) => Some(dir.clone()),
        (None, Some(configured)) => configured.clone(),
        (None, None) => default_state_dir,
    };
    // In a state directory the user named; one that came with the app (the default beside
    // the manifest, or a runtime config's) is not trusted with native code.
    let compile_cache = match (&args.state_dir, compile_cache) {
        (Some(dir), _) => dir.join("cache"),
        (None, Some(user_cache)) => user_cache,
        (None, None) => bail!(
            "no cache directory for compiled components: set HOME or XDG_CACHE_HOME, or give --state-dir or --cache-dir"
        ),
    };
    let declared = app
        .variables
        .iter()
        .map(|(name, decl)| (name.as_str(), decl.default.as_deref()));
    let given = read_variables(&args.variable)?;
    let providers = &runtime_config.variable_providers;
    let variables =
        AppVariables::resolve(declared, &given, providers, |key| std::env::var(key).ok())?;
    let metrics = Arc::new(Metrics::default());
    metrics.instance_slots(args.max_instances);
    let stores = Arc::new(Stores::open(
        &runtime_config.key_value_stores,
        state_dir.as_deref(),
        metrics.clone(),
    )?);
    stores.set_initial(&args.key_values).await?;

    // Each component a trigger names is read, then compiled (or loaded from cache) and
    // linked once. Which `wasi:http` they export decides the engine's settings.
    let mut sources: BTreeMap<&str, (Vec<u8>, HttpWorld)> = BTreeMap::new();
    for trigger in &app.http_triggers {
        let id = trigger.component.as_str();
        if sources.contains_key(id) {
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
        let wasm = std::fs::read(&decl.source)
            .with_context(|| format!("component `{id}`: cannot read {}", decl.source.display()))?;
        let world = HttpWorld::of(&wasm).with_context(|| {
            format!(
                "component `{id}`: {} is not a valid WebAssembly component",
                decl.source.display()
            )
        })?;
        sources.insert(id, (wasm, world));
    }
    let defaults = InstanceReuse::default();
    let limits = RuntimeLimits {
        serving_threads: listeners.len(),
        max_instances: args.max_instances,
        queue_timeout: args.queue_timeout,
        request_timeout: args.request_timeout,
        reuse: InstanceReuse {
            max_requests: args
                .max_instance_reuse_count
                .unwrap_or(defaults.max_requests),
            max_concurrent_requests: args
                .max_instance_concurrent_reuse_count
                .unwrap_or(defaults.max_concurrent_requests),
            idle_timeout: args.idle_instance_timeout,
        },
    };
    let worlds = sources.values().map(|(_, world)| *world);
    let engine = build_engine(
        &EngineLimits {
            max_instances: args.max_instances,
            max_memory: args
                .max_memory
                .or(runtime_config.max_instance_memory)
                .unwrap_or(DEFAULT_MAX_INSTANCE_MEMORY),
        },
        workload(worlds, &limits.reuse),
    )?;
    let mut runtime = Runtime::new(engine.clone(), stores, limits, metrics.clone());
    let mut indices: BTreeMap<&str, usize> = BTreeMap::new();
    for (id, (wasm, world)) in &sources {
        let id = *id;
        let decl = &app.components[id];
        let loaded = load_component(&engine, &decl.source, wasm, &compile_cache)
            .with_context(|| format!("component `{id}`"))?;
        metrics.compile_cache_lookup(loaded.from_cache);
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
        indices.insert(
            id,
            runtime.add_component(&loaded.component, *world, context)?,
        );
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

    let address = listeners[0].local_addr()?;
    let shutdown = shutdown_signal(args.shutdown_delay);
    print_routes(address, &router, &indices);
    if let Some(metrics_address) = args.metrics_listen {
        serve_metrics(metrics_address, metrics.clone(), args.header_read_timeout).await?;
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
    server.serve(listeners, shutdown).await?;
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

/// Serves `/metrics` on `address`; a client must send its headers within `header_read_timeout`,
/// as on the app's port.
async fn serve_metrics(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    header_read_timeout: Duration,
) -> Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    println!("Metrics on http://{}/metrics", listener.local_addr()?);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener::accept(&listener).await;
            let metrics = metrics.clone();
            let service = hyper::service::service_fn(move |request| {
                let metrics = metrics.clone();
                async move { metrics.serve_http(request).await }
            });
            tokio::spawn(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
        }
    });
    Ok(())
}

/// Resolves when the host should stop accepting: at once on SIGINT (a person at a terminal),
/// `delay` after SIGTERM (an orchestrator, whose load balancers may still send for a while).
/// The handlers are in place when this returns, before the host says it is serving.
fn shutdown_signal(delay: Duration) -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    async move {
        tokio::select! {
            _ = terminate.recv() => {
                tracing::info!("SIGTERM: serving for {delay:?} more, then draining");
                tokio::time::sleep(delay).await;
            }
            _ = interrupt.recv() => {}
        }
    }
}
