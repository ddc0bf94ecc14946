//! The listening socket, bound before anything else starts, so a privileged port (below 1024,
//! such as the 80 that spin-operator asks for) works without running as root.
//!
//! Images give the binary `CAP_NET_BIND_SERVICE` as a *permitted* file capability, without the
//! effective bit (`setcap cap_net_bind_service=p`). Exec never fails for it: a container that
//! drops every capability (kube/'s hardened Deployment) starts the host without it, where an
//! effective file capability would make exec itself fail. Where the capability is permitted
//! (a pod with the runtime's default set, as spin-operator makes), the host raises it for the
//! one `bind` and then gives it up for good. Capabilities are per thread and inherited by the
//! threads a thread starts, so this runs on the main thread before the async runtime exists.

use anyhow::{Context, Result};
use caps::{CapSet, Capability};
use socket2::{Domain, Socket, Type};
use std::net::SocketAddr;

/// Connections the kernel queues before the host accepts them (tokio's default).
const BACKLOG: i32 = 1024;

/// Binds `address` for the HTTP front, with `CAP_NET_BIND_SERVICE` raised for the bind where
/// it is permitted but not effective.
pub fn bind(address: SocketAddr) -> Result<std::net::TcpListener> {
    let raised = raise_bind_capability();
    let bound = bind_socket(address);
    if raised {
        // Neither effective nor permitted any more: nothing later can bind low ports again.
        let _ = caps::drop(None, CapSet::Effective, Capability::CAP_NET_BIND_SERVICE);
        let _ = caps::drop(None, CapSet::Permitted, Capability::CAP_NET_BIND_SERVICE);
    }
    bound.with_context(|| format!("cannot listen on {address}"))
}

/// True when the capability was permitted, not effective, and is effective now.
fn raise_bind_capability() -> bool {
    let has = |set| caps::has_cap(None, set, Capability::CAP_NET_BIND_SERVICE).unwrap_or(false);
    has(CapSet::Permitted)
        && !has(CapSet::Effective)
        && caps::raise(None, CapSet::Effective, Capability::CAP_NET_BIND_SERVICE).is_ok()
}

fn bind_socket(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}
