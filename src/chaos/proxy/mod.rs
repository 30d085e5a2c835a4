//! A user-space TCP fault proxy (this kernel has no netem, DESIGN.md §4): every connection
//! accepted on `listen` is forwarded to `upstream`, and the fault in force shapes it.
//!
//! After toxiproxy's toxics: a fault is a value swapped at run time (a `watch` channel every
//! connection subscribes to), never a restart, so switching one on or off does not drop
//! healthy connections; a cleared fault flushes what it was holding instead of dropping it.
//!
//! - `mod.rs`: the `Proxy` (owns the accept loop), `ProxyHandle` (cheap clone: set, clear,
//!   read counters), `Stats`;
//! - `fault.rs`: the faults, their validation and JSON form;
//! - `forward.rs`: one connection, two directions, the faults applied per chunk;
//! - `control.rs`: the HTTP control API, and its client (`remote_set`, `remote_clear`), so a
//!   run's timeline and `loadgen recover` drive a proxy that runs in another process;
//! - `upstream.rs`: where connections go, looked up again when a named upstream moves;
//! - `daemon.rs`: `loadgen proxy`, the long-running proxy the local stack puts in front of
//!   Postgres.
//!
//! The timeline reaches proxies through `chaos/network.rs` (`{ proxy = … }` targets).

mod control;
pub(crate) mod daemon;
mod fault;
mod forward;
mod upstream;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

pub use control::{remote_clear, remote_set, serve_control};
pub(crate) use fault::FaultError;
pub use fault::{Direction, Fault};
pub use upstream::{Resolver, Upstream};

/// Counters since the proxy started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Connections accepted (including those reset on accept).
    pub accepted: u64,
    /// Connections open now.
    pub active: u64,
    /// Bytes written to the upstream (client → upstream).
    pub bytes_upstream: u64,
    /// Bytes written to clients (upstream → client).
    pub bytes_downstream: u64,
    /// Bytes read and dropped by a blackhole.
    pub bytes_discarded: u64,
    /// Connections reset by a `Reset` fault (live ones and new ones).
    pub reset_by_fault: u64,
    /// Accepted connections whose upstream connect failed (they are reset).
    pub upstream_failures: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    active: AtomicU64,
    bytes_upstream: AtomicU64,
    bytes_downstream: AtomicU64,
    bytes_discarded: AtomicU64,
    reset_by_fault: AtomicU64,
    upstream_failures: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            accepted: get(&self.accepted),
            active: get(&self.active),
            bytes_upstream: get(&self.bytes_upstream),
            bytes_downstream: get(&self.bytes_downstream),
            bytes_discarded: get(&self.bytes_discarded),
            reset_by_fault: get(&self.reset_by_fault),
            upstream_failures: get(&self.upstream_failures),
        }
    }
}

/// State shared by the accept loop, every connection and the control API.
struct Shared {
    /// The bound address (the real port when `listen` asked for port 0); `Refuse` rebinds it.
    local: SocketAddr,
    upstream: Upstream,
    fault: watch::Sender<Option<Fault>>,
    /// Whether the listening socket is open (false while `Refuse` holds it closed, and
    /// until it is bound again after).
    listening: watch::Sender<bool>,
    counters: Counters,
    /// Who set the fault in force through the control API (a run's owner token), if anyone
    /// did: only they may change or clear it there.
    owner: std::sync::Mutex<Option<String>>,
    /// Cancelled by `shutdown` or drop: stops accepting, closes connections and the control API.
    stop: CancellationToken,
}

/// Sets and reads the fault of a running proxy; cheap to clone, usable from any task.
#[derive(Clone)]
pub struct ProxyHandle {
    shared: Arc<Shared>,
}

impl ProxyHandle {
    /// Puts `fault` in force at once, replacing any other. Live connections pick it up on
    /// their next chunk (`Reset` and `Refuse` act immediately).
    pub fn set(&self, fault: Fault) -> Result<(), FaultError> {
        fault.validate()?;
        self.shared.fault.send_replace(Some(fault));
        Ok(())
    }

    /// Removes the fault: live connections carry on clean (held chunks are sent now), a
    /// refused listener is reopened. Idempotent.
    pub fn clear(&self) {
        self.shared.fault.send_replace(None);
    }

    /// Clears the fault and waits (at most `within`) until the proxy listens again: after
    /// `Refuse` the port must be bound anew, and someone else may have taken it meanwhile.
    /// `Err` means cleared but still refusing connections: recovery must not claim success.
    pub async fn clear_and_wait(&self, within: Duration) -> Result<(), String> {
        self.clear();
        let mut listening = self.shared.listening.subscribe();
        match tokio::time::timeout(within, listening.wait_for(|open| *open)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(format!(
                "the fault is cleared but {} is not listening again after {within:?} (is the port taken?)",
                self.shared.local
            )),
        }
    }

    /// Changes the fault on behalf of `owner` (`None`: clear), if the fault in force is
    /// not another owner's: `Err` names why not. An unowned fault (set in-process, or
    /// without a token) may be changed by anyone who can reach the API.
    pub fn change_as(&self, owner: Option<&str>, fault: Option<Fault>) -> Result<(), String> {
        let mut held = self.shared.owner.lock().unwrap_or_else(|p| p.into_inner());
        if self.current().is_some()
            && let Some(holder) = held.as_deref()
            && Some(holder) != owner
        {
            return Err(
                "the fault in force belongs to another run (its owner token is in that run's ledger)"
                    .to_string(),
            );
        }
        match fault {
            Some(fault) => {
                self.set(fault).map_err(|e| format!("bad fault: {e}"))?;
                *held = owner.map(str::to_string);
            }
            None => {
                self.clear();
                *held = None;
            }
        }
        Ok(())
    }

    pub fn current(&self) -> Option<Fault> {
        *self.shared.fault.borrow()
    }

    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local
    }

    /// The upstream's address now (a named one's latest lookup).
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream.addr()
    }

    /// Whether the proxy has been shut down (or dropped).
    pub fn is_stopped(&self) -> bool {
        self.shared.stop.is_cancelled()
    }
}

/// A running proxy. Dropping it stops it: the listener closes and live connections are
/// closed (FIN), as `shutdown` does without waiting.
pub struct Proxy {
    handle: ProxyHandle,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Binds `listen` (port 0 picks a free port: see `local_addr`) and forwards every
    /// connection to `upstream`. Must be called inside a tokio runtime.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Proxy> {
        Proxy::start_to(listen, Upstream::fixed(upstream)).await
    }

    /// As `start`, to an upstream that may be looked up again (a name).
    pub async fn start_to(listen: SocketAddr, upstream: Upstream) -> io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let shared = Arc::new(Shared {
            local: listener.local_addr()?,
            upstream,
            fault: watch::Sender::new(None),
            listening: watch::Sender::new(true),
            counters: Counters::default(),
            owner: std::sync::Mutex::new(None),
            stop: CancellationToken::new(),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(Proxy {
            handle: ProxyHandle { shared },
            accept: Some(accept),
        })
    }

    pub fn handle(&self) -> ProxyHandle {
        self.handle.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }

    pub fn set(&self, fault: Fault) -> Result<(), FaultError> {
        self.handle.set(fault)
    }

    pub fn clear(&self) {
        self.handle.clear()
    }

    pub fn current(&self) -> Option<Fault> {
        self.handle.current()
    }

    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Stops accepting, closes every connection and waits until they are all gone.
    pub async fn shutdown(mut self) {
        self.handle.shared.stop.cancel();
        if let Some(accept) = self.accept.take() {
            // The accept loop only ends by cancellation; a panic in it has nothing to undo.
            let _ = accept.await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.handle.shared.stop.cancel();
    }
}

/// How long to wait after a failed accept (e.g. out of file descriptors) or a failed rebind,
/// so a persistent error does not spin a core.
const RETRY: Duration = Duration::from_millis(50);

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut listener = Some(listener);
    let mut faults = shared.fault.subscribe();
    // Connections live here so that ending the loop (shutdown, drop) aborts them all.
    let mut connections = JoinSet::new();
    loop {
        let refuse = matches!(*faults.borrow_and_update(), Some(Fault::Refuse));
        if refuse {
            // Closing the socket is what makes connects fail with "connection refused".
            listener = None;
            shared.listening.send_replace(false);
        } else if listener.is_none() {
            match TcpListener::bind(shared.local).await {
                Ok(reopened) => {
                    listener = Some(reopened);
                    shared.listening.send_replace(true);
                }
                Err(_) => {
                    // The port may be taken meanwhile: keep trying until cleared or stopped.
                    tokio::select! {
                        _ = shared.stop.cancelled() => break,
                        _ = tokio::time::sleep(RETRY) => continue,
                    }
                }
            }
        }
        tokio::select! {
            _ = shared.stop.cancelled() => break,
            changed = faults.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((client, _)) => {
                    Counters::add(&shared.counters.accepted, 1);
                    connections.spawn(forward::serve(client, shared.clone()));
                }
                Err(_) => tokio::time::sleep(RETRY).await,
            },
        }
    }
    connections.shutdown().await;
}

/// Accepts on the listener, or waits forever while there is none (`Refuse`).
async fn accept(listener: Option<&TcpListener>) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}
