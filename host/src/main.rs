//! greeter-host: runs Spin HTTP apps, from their `spin.toml` or from a registry, on wasmtime,
//! as `spin up` does, for everything Greeter uses. Read top-down:

/// mimalloc, the global allocator.
mod allocator;
/// What to run: a local manifest or a registry's locked app, as one `App`.
mod app;
/// What a component may reach: key-value, variables, outbound HTTP.
mod capabilities;
/// Command lines (`up`, `registry`), where `-f` points, and the start-up sequence.
mod cli;
/// Compiled components on disk, reused across starts.
mod compile_cache;
/// The wasmtime engine: pooling allocator, epoch interruption.
mod engine;
/// Files written whole (temporary file, sync, rename), for every cache.
mod files;
/// Prometheus metrics on the admin listener.
mod metrics;
/// Spin apps in OCI registries: Spin's artifact layout, cache and credentials.
mod registry;
/// Requests in instances under their deadline: a fresh one each for wasi:http@0.2, reused
/// ones for wasi:http@0.3.
mod runtime;
/// `runtime-config.toml`: where key-value stores live, where variables come from.
mod runtime_config;
/// The HTTP front: listener, routing, limits, accounting, graceful drain.
mod server;
/// OpenTelemetry traces over OTLP, configured by the `OTEL_*` environment as Spin's are.
mod traces;

fn main() -> std::process::ExitCode {
    allocator::tune();
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
