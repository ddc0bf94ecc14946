//! What a component may reach beyond its own memory, one module per host capability. Each owns
//! its configuration, its per-instance state and its grant checks, and links its interface
//! through a projection of the store state onto that state (as `wasmtime_wasi_http::WasiHttpView`
//! and Spin's factors do). Nothing here imports the runtime, the server or the manifest.
//!
//! Adding a host interface: a module here with `add_to_linker`, and one line in
//! `runtime::link`.

/// `fermyon:spin/key-value@2.0.0`: labelled stores on SQLite or Redis.
pub mod key_value;
/// Outbound `wasi:http`: `allowed_outbound_hosts` and Spin's error codes.
pub mod outbound_http;
/// `fermyon:spin/variables@2.0.0`: application variables and component templates.
pub mod variables;
