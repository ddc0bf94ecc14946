//! The command line, one file per command: `up` serves an app as `spin up` does, `registry`
//! pushes, pulls and logs in as `spin registry` does, with Spin's flag names and environment
//! variables where Spin has them.

mod registry;
mod source;
mod units;
mod up;

use crate::traces::{self, Traces};
use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    version,
    about = "Runs Spin HTTP apps from their spin.toml or a registry on wasmtime"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the application, like `spin up`.
    Up(Box<up::UpArgs>),
    /// Push, pull and log in to registries, like `spin registry`.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
}

pub fn run() -> Result<()> {
    // One TLS crypto provider for every client (registry, Redis): ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match Cli::parse().command {
        Command::Up(args) => up::run(*args),
        Command::Registry(command) => registry::run(command),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The log on stderr (events only, filtered by `RUST_LOG`) and, when configured, the traces.
fn init_logging(format: LogFormat, traces: Option<&Traces>) {
    use tracing_subscriber::prelude::*;
    let filter = log_filter();
    let most_verbose = filter.max_level_hint();
    // Without traces, no layer at all: even an empty one would make every callsite interesting.
    match traces {
        Some(traces) => tracing_subscriber::registry()
            .with(traces.layer())
            .with(log_layer(format, filter))
            .init(),
        None => tracing_subscriber::registry()
            .with(log_layer(format, filter))
            .init(),
    }
    // The `log` records of wasmtime's hot paths (its component-model concurrency logs at
    // `trace` on every call) are bridged into tracing unless `log` itself drops them: tell it
    // the most verbose level the filter shows (the bridge cannot read it through our filters).
    if let Some(level) = most_verbose {
        log::set_max_level(match level.into_level() {
            None => log::LevelFilter::Off,
            Some(tracing::Level::ERROR) => log::LevelFilter::Error,
            Some(tracing::Level::WARN) => log::LevelFilter::Warn,
            Some(tracing::Level::INFO) => log::LevelFilter::Info,
            Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
            Some(tracing::Level::TRACE) => log::LevelFilter::Trace,
        });
    }
}

/// `RUST_LOG`, else the access log and warnings.
fn log_filter() -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn"))
}

fn log_layer<S>(
    format: LogFormat,
    filter: tracing_subscriber::EnvFilter,
) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::{FilterExt, filter_fn};
    let shown = filter.and(filter_fn(traces::logged));
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => log.with_filter(shown).boxed(),
        LogFormat::Json => log.json().flatten_event(true).with_filter(shown).boxed(),
    }
}

/// Builds the async runtime and runs `work` on it.
fn block_on<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_parses() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
