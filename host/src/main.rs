//! greeter-host: runs Spin HTTP apps from their `spin.toml` on wasmtime, as `spin up` does,
//! for everything Greeter uses. Read top-down:

/// What a component may reach: key-value, variables, outbound HTTP.
mod capabilities;
/// Command line and start-up sequence.
mod cli;
/// Compiled components on disk, reused across starts.
mod compile_cache;
/// The wasmtime engine: pooling allocator, epoch interruption.
mod engine;
/// `spin.toml` (manifest v2), parsed and validated.
mod manifest;
/// Prometheus metrics on the admin listener.
mod metrics;
/// One request in one fresh instance, under its deadline.
mod runtime;
/// `runtime-config.toml`: where key-value stores live.
mod runtime_config;
/// The HTTP front: listener, routing, limits, accounting, graceful drain.
mod server;

fn main() -> std::process::ExitCode {
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
