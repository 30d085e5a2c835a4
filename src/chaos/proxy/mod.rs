//! A user-space TCP fault proxy (this kernel has no netem): every connection accepted on
//! `listen` is forwarded to `upstream`, chunk by chunk, through the fault in force at that
//! moment. Faults switch at run time; clearing one leaves live connections working.
//!
//! Not yet wired into the fault timeline (`{ proxy = … }` targets): see the issue tracker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to the bytes it forwards.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NetFault {
    /// Each chunk waits `delay` ± uniform `jitter` before it is forwarded (both directions).
    Latency { delay: Duration, jitter: Duration },
    /// Chunks are paced to at most this many bytes per second (each direction).
    Bandwidth { bytes_per_second: u64 },
    /// Live connections are reset (RST) and new ones are reset on accept.
    Reset,
    /// Bytes are read and dropped; nothing is answered, connections stay open.
    Blackhole,
    /// A close from either side reaches the other only after `delay`.
    SlowClose { delay: Duration },
}

/// A running proxy; dropping it stops accepting (live connections end with their peers).
pub struct Proxy {
    local: SocketAddr,
    fault: Arc<watch::Sender<Option<NetFault>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<Proxy> {
        let listener = TcpListener::bind(listen).await?;
        let local = listener.local_addr()?;
        let (fault, _) = watch::channel(None);
        let fault = Arc::new(fault);
        let accept = tokio::spawn(accept_loop(listener, upstream, fault.clone()));
        Ok(Proxy {
            local,
            fault,
            accept,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn set(&self, fault: NetFault) {
        self.fault.send_replace(Some(fault));
    }

    pub fn clear(&self) {
        self.fault.send_replace(None);
    }

    pub fn current(&self) -> Option<NetFault> {
        *self.fault.borrow()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    fault: Arc<watch::Sender<Option<NetFault>>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let current = *fault.borrow();
        if current == Some(NetFault::Reset) {
            reset(client);
            continue;
        }
        let fault = fault.subscribe();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                reset(client);
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = tokio::spawn(pump(client_read, server_write, fault.clone()));
            let down = tokio::spawn(pump(server_read, client_write, fault));
            let _ = tokio::join!(up, down);
        });
    }
}

/// Closes with RST instead of FIN: linger zero, then drop.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Forwards one direction, applying the fault in force to each chunk. Ends the connection
/// with a reset when a `Reset` fault arrives.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut fault: watch::Receiver<Option<NetFault>>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            changed = fault.changed() => {
                if changed.is_err() {
                    return;
                }
                let current = *fault.borrow();
                if current == Some(NetFault::Reset) {
                    reset_halves(from, to);
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let current = *fault.borrow();
                if let Some(NetFault::SlowClose { delay }) = current {
                    tokio::time::sleep(delay).await;
                }
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let current = *fault.borrow();
        match current {
            Some(NetFault::Blackhole) => continue,
            Some(NetFault::Reset) => {
                reset_halves(from, to);
                return;
            }
            Some(NetFault::Latency { delay, jitter }) => {
                tokio::time::sleep(jittered(delay, jitter)).await;
            }
            Some(NetFault::Bandwidth { bytes_per_second }) => {
                let seconds = n as f64 / bytes_per_second.max(1) as f64;
                tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
            }
            Some(NetFault::SlowClose { .. }) | None => {}
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Marks both sockets this pump touches for RST; they reset once both pumps (each holding
/// one half of each socket) have let go.
fn reset_halves(from: OwnedReadHalf, to: OwnedWriteHalf) {
    let _ = from.as_ref().set_zero_linger();
    let _ = to.as_ref().set_zero_linger();
}

fn jittered(delay: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return delay;
    }
    let spread = jitter.as_secs_f64();
    let offset = rand::rng().random_range(-spread..=spread);
    Duration::from_secs_f64((delay.as_secs_f64() + offset).max(0.0))
}
