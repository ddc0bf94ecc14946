//! The listening sockets, one per serving thread, bound before anything else starts, so a
//! privileged port (below 1024, such as the 80 that spin-operator asks for) works without
//! running as root.
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
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Connections the kernel queues before the host accepts them (tokio's default).
const BACKLOG: i32 = 1024;

/// After a failed accept (typically EMFILE, out of file descriptors), how long to wait before
/// the next: the failure repeats at once until a connection closes.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The next connection. A failure is logged and retried, never the end of the listener.
pub async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(ACCEPT_RETRY).await;
            }
        }
    }
}

/// Binds `address` `count` times for the HTTP front, with `CAP_NET_BIND_SERVICE` raised for
/// the binds where it is permitted but not effective. Several sockets share the address
/// (`SO_REUSEPORT`), and the kernel spreads new connections over them: one socket shared by
/// several threads would wake them all, and the first awake would take every connection.
/// (Linux lets only processes of the same user join the group.)
pub fn bind(address: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>> {
    let raised = raise_bind_capability();
    let bound = bind_sockets(address, count);
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

fn bind_sockets(address: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    let first = bind_socket(address, count > 1)?;
    // Port 0 picks a free port: the others join the first where it landed.
    let address = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(bind_socket(address, true)?);
    }
    Ok(sockets)
}

fn bind_socket(address: SocketAddr, shared: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(address), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(shared)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel spreads connections over every socket of the group.
    #[test]
    fn the_sockets_share_one_port_and_each_is_given_connections() {
        let sockets = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let address = sockets[0].local_addr().unwrap();
        assert!(sockets.iter().all(|s| s.local_addr().unwrap() == address));
        let clients: Vec<_> = (0..64)
            .map(|_| std::net::TcpStream::connect(address).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        for socket in &sockets {
            let mut accepted = 0;
            while socket.accept().is_ok() {
                accepted += 1;
            }
            assert!(accepted > 0, "a socket was given no connection");
        }
        drop(clients);
    }
}
