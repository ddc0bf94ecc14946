//! What a component may reach beyond its own memory, one module per host capability. Each owns
//! its configuration, its per-instance state and its grant checks, and links its interface
//! through a projection of the store state onto that state (as `wasmtime_wasi_http::WasiHttpView`
//! and Spin's factors do). Nothing here imports the runtime, the server or the manifest.
//!
//! Adding a host interface: a module here with `add_to_linker`, and one line in
//! `runtime::link` (a 3.0.0 interface: `add_v3_to_linker`, linked for 0.3 components).

use std::time::Duration;

/// `fermyon:spin/key-value@2.0.0`, `spin:key-value@3.0.0` and `wasi:keyvalue`: labelled
/// stores on SQLite or Redis.
pub mod key_value;
/// Outbound `wasi:http`: `allowed_outbound_hosts` and Spin's error codes.
pub mod outbound_http;
/// `fermyon:spin/variables@2.0.0` and `@3.0.0`: application variables and component templates.
pub mod variables;

/// What the capabilities report about the calls they make on a component's behalf (the
/// metrics listen); they know nothing of who listens.
pub trait Observer: Send + Sync {
    /// A key-value call on store `store` (backend `sqlite` or `redis`) ended.
    fn key_value_call(&self, call: KeyValueCall<'_>, elapsed: Duration);
    /// An outbound request got its response head (`Some(status)`) or failed (`None`).
    fn outbound_request(&self, server_address: &str, status: Option<u16>, elapsed: Duration);
}

pub struct KeyValueCall<'a> {
    pub store: &'a str,
    pub backend: &'static str,
    pub operation: &'static str,
    pub ok: bool,
}

/// For tests of one capability, where nobody listens.
#[cfg(test)]
pub struct Unobserved;

#[cfg(test)]
impl Observer for Unobserved {
    fn key_value_call(&self, _: KeyValueCall<'_>, _: Duration) {}
    fn outbound_request(&self, _: &str, _: Option<u16>, _: Duration) {}
}

/// The span of the request a host call serves, the parent of the capability's own spans. In a
/// reused 0.3 instance several requests run in the instance's one task, so the runtime says
/// whose call it is; where it says nothing, that is the current span.
#[derive(Default)]
pub struct RequestSpan(Option<tracing::Span>);

impl RequestSpan {
    pub fn set(&mut self, span: Option<tracing::Span>) {
        self.0 = span;
    }

    pub fn get(&self) -> tracing::Span {
        self.0.clone().unwrap_or_else(tracing::Span::current)
    }
}
