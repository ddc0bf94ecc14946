//! greeter-host: runs Spin HTTP apps from their `spin.toml` on wasmtime, as `spin up` does,
//! for everything Greeter uses. Read top-down:

/// Host bindings generated from `wit/`.
mod bindings;
/// Command line and start-up sequence.
mod cli;
/// Key-value stores (`fermyon:spin/key-value`): SQLite, Redis.
mod kv;
/// `spin.toml` (manifest v2), parsed and validated.
mod manifest;
/// Prometheus metrics on the admin listener.
mod metrics;
/// The outbound HTTP allow-list (`allowed_outbound_hosts`).
mod outbound;
/// Which trigger serves a path, and the `spin-*` request headers.
mod routing;
/// Engine, compile cache, pre-instantiation, one instance per request.
mod runtime;
/// `runtime-config.toml`: where key-value stores live.
mod runtime_config;
/// HTTP listener, request limits, access log, graceful drain.
mod server;
/// Application and component variables (`fermyon:spin/variables`).
mod variables;

fn main() -> std::process::ExitCode {
    match cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
