//! One proxied connection. Each direction is a reader and a writer joined by a short queue
//! of time-stamped chunks: the reader stamps a chunk with the moment it may leave, the writer
//! waits for that moment. So a chunk read at `t` leaves at `t + delay` whatever is queued
//! ahead of it (delays overlap instead of adding up, as they would if one loop slept per
//! chunk), and the queue's bound passes back-pressure to the sender as TCP would.
//!
//! Every wait also watches the fault, so a change takes effect at once: a cleared latency
//! sends what it was holding, a `Reset` tears the connection down mid-wait.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Counters, Direction, Fault, Shared};

/// Largest chunk read at once.
const CHUNK: usize = 16 * 1024;
/// Chunks a direction may hold (at most 1 MiB): enough to keep a delayed stream flowing at
/// full speed, small enough that a stalled writer soon stops the reader.
const QUEUE: usize = 64;
/// A loopback upstream that does not answer a SYN within this long is as good as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct Chunk {
    bytes: Bytes,
    /// When the chunk may leave (its arrival plus the latency in force then).
    due: Instant,
}

/// Why a direction stopped early: its connection is then reset on both sides, the way a
/// reset or vanished peer would look without a proxy in between.
struct Abort;

enum Outcome {
    /// Both directions ended with a close, or the proxy is stopping: plain close.
    Closed,
    /// A peer reset or vanished: pass the reset on.
    Aborted,
    /// The `Reset` fault.
    ResetByFault,
}

/// Connects to the upstream; when that fails and a named upstream now has another
/// address (its container was recreated), once more to that one.
async fn connect_upstream(shared: &Shared) -> Option<TcpStream> {
    let connect = |addr| tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr));
    let first = shared.upstream.addr();
    if let Ok(Ok(server)) = connect(first).await {
        return Some(server);
    }
    let moved = shared.upstream.moved_from(first).await?;
    connect(moved).await.ok()?.ok()
}

/// Serves one accepted connection until both sides have closed.
pub(super) async fn serve(mut client: TcpStream, shared: Arc<Shared>) {
    let _active = Active::enter(&shared.counters.active);
    if matches!(*shared.fault.borrow(), Some(Fault::Reset)) {
        reset(&client);
        drop(client);
        Counters::add(&shared.counters.reset_by_fault, 1);
        return;
    }
    let mut server = tokio::select! {
        _ = shared.stop.cancelled() => return,
        connected = connect_upstream(&shared) => match connected {
            Some(server) => server,
            // The client sees what it would see without the proxy: a refused connection,
            // which for an accepted socket can only be told as a reset.
            None => {
                Counters::add(&shared.counters.upstream_failures, 1);
                reset(&client);
                return;
            }
        },
    };
    // The proxy adds only the delay it is told to: Nagle would batch small writes.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let outcome = pump(&mut client, &mut server, &shared).await;
    if matches!(outcome, Outcome::Aborted | Outcome::ResetByFault) {
        reset(&client);
        reset(&server);
    }
    // Closed (or reset) before counting, so whoever reads the counter sees it done.
    drop(client);
    drop(server);
    if matches!(outcome, Outcome::ResetByFault) {
        Counters::add(&shared.counters.reset_by_fault, 1);
    }
}

async fn pump(client: &mut TcpStream, server: &mut TcpStream, shared: &Shared) -> Outcome {
    let (client_read, client_write) = client.split();
    let (server_read, server_write) = server.split();
    let up = direction(client_read, server_write, Direction::Upstream, shared);
    let down = direction(server_read, client_write, Direction::Downstream, shared);
    let mut faults = shared.fault.subscribe();
    tokio::select! {
        _ = shared.stop.cancelled() => Outcome::Closed,
        // A closed channel cannot happen while `shared` is alive; treat it as "never".
        Ok(_) = faults.wait_for(|f| matches!(f, Some(Fault::Reset))) => Outcome::ResetByFault,
        both = async { tokio::try_join!(up, down) } => match both {
            Ok(_) => Outcome::Closed,
            Err(Abort) => Outcome::Aborted,
        },
    }
}

/// Marks the socket to close with RST instead of FIN (SO_LINGER 0); the caller drops it.
fn reset(stream: &TcpStream) {
    // Failing to set linger only means the peer sees a FIN instead: still a close.
    let _ = stream.set_zero_linger();
}

/// One way of the connection: `way` is `Upstream` (client → server) or `Downstream`.
async fn direction(
    from: ReadHalf<'_>,
    to: WriteHalf<'_>,
    way: Direction,
    shared: &Shared,
) -> Result<(), Abort> {
    let (queue, queued) = mpsc::channel(QUEUE);
    tokio::try_join!(
        read_side(from, queue, way, shared),
        write_side(queued, to, way, shared)
    )?;
    Ok(())
}

async fn read_side(
    mut from: ReadHalf<'_>,
    queue: mpsc::Sender<Chunk>,
    way: Direction,
    shared: &Shared,
) -> Result<(), Abort> {
    // Chunks leave in arrival order: with jitter, a chunk never leaves before the one ahead.
    let mut last_due = Instant::now();
    loop {
        let mut buffer = BytesMut::with_capacity(CHUNK);
        // End of stream returns, dropping `queue`: the writer then passes the close on.
        match from.read_buf(&mut buffer).await {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(_) => return Err(Abort),
        }
        let now = Instant::now();
        let due = match *shared.fault.borrow() {
            Some(Fault::Blackhole) => {
                Counters::add(&shared.counters.bytes_discarded, buffer.len() as u64);
                continue;
            }
            Some(Fault::Latency {
                delay,
                jitter,
                direction,
            }) if direction.includes(way) => now + jittered(delay, jitter),
            _ => now,
        };
        last_due = last_due.max(due);
        let chunk = Chunk {
            bytes: buffer.freeze(),
            due: last_due,
        };
        if queue.send(chunk).await.is_err() {
            // The writer has stopped; its result says why.
            return Ok(());
        }
    }
}

async fn write_side(
    mut queued: mpsc::Receiver<Chunk>,
    mut to: WriteHalf<'_>,
    way: Direction,
    shared: &Shared,
) -> Result<(), Abort> {
    let mut faults = shared.fault.subscribe();
    let written = match way {
        Direction::Upstream => &shared.counters.bytes_upstream,
        _ => &shared.counters.bytes_downstream,
    };
    let mut bucket = Bucket::default();
    'chunks: while let Some(chunk) = queued.recv().await {
        // Hold the chunk until it is due, for as long as the latency stays in force.
        loop {
            let fault = *faults.borrow_and_update();
            match fault {
                Some(Fault::Blackhole) => {
                    Counters::add(&shared.counters.bytes_discarded, chunk.bytes.len() as u64);
                    continue 'chunks;
                }
                Some(Fault::Latency { direction, .. })
                    if direction.includes(way) && Instant::now() < chunk.due =>
                {
                    tokio::select! {
                        _ = tokio::time::sleep_until(chunk.due) => break,
                        _ = changed(&mut faults) => {}
                    }
                }
                _ => break,
            }
        }
        let mut rest = chunk.bytes;
        while !rest.is_empty() {
            let fault = *faults.borrow_and_update();
            let take = match fault {
                Some(Fault::Blackhole) => {
                    Counters::add(&shared.counters.bytes_discarded, rest.len() as u64);
                    continue 'chunks;
                }
                Some(Fault::Bandwidth {
                    bytes_per_second,
                    direction,
                }) if direction.includes(way) => match bucket.take(bytes_per_second, rest.len()) {
                    Ok(n) => n,
                    Err(wait) => {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = changed(&mut faults) => {}
                        }
                        continue;
                    }
                },
                _ => rest.len(),
            };
            let piece = rest.split_to(take);
            to.write_all(&piece).await.map_err(|_| Abort)?;
            Counters::add(written, piece.len() as u64);
        }
    }
    // The reader saw the end of the stream: pass the close on, late under a slow close and
    // not at all while blackholed (a blackhole never answers, not even with a FIN).
    loop {
        let fault = *faults.borrow_and_update();
        match fault {
            Some(Fault::Blackhole) => changed(&mut faults).await,
            Some(Fault::SlowClose { delay }) => {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => break,
                    _ = changed(&mut faults) => {}
                }
            }
            _ => break,
        }
    }
    // The peer may already be gone; the other direction will find out on its own.
    let _ = to.shutdown().await;
    Ok(())
}

/// Waits for the next fault change. The sender lives in `Shared`, which every connection
/// holds, so it cannot close first; if it ever did, wait forever (stop still ends us).
async fn changed(faults: &mut watch::Receiver<Option<Fault>>) {
    if faults.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// `delay` ± uniform `jitter` (validation keeps jitter ≤ delay, so never negative).
fn jittered(delay: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return delay;
    }
    let spread = i128::try_from(jitter.as_micros()).unwrap_or(i128::MAX);
    let offset = rand::rng().random_range(-spread..=spread);
    let micros = i128::try_from(delay.as_micros()).unwrap_or(i128::MAX) + offset;
    Duration::from_micros(u64::try_from(micros.max(0)).unwrap_or(u64::MAX))
}

/// A token bucket for one direction of one connection, refilled at the fault's rate. Writes
/// go in steps of at most 50 ms worth of bytes (even pacing at low rates, whole 16 KiB
/// chunks at high ones); the bucket holds two steps, so the millisecond a timer oversleeps
/// is credited rather than lost. It starts with one step (a short first burst).
#[derive(Default)]
struct Bucket {
    rate: u64,
    tokens: f64,
    stamp: Option<Instant>,
}

impl Bucket {
    /// How many of `want` bytes may be written now, or how long until some may.
    fn take(&mut self, rate: u64, want: usize) -> Result<usize, Duration> {
        let rate = rate.max(1);
        let step_max = (rate as f64 / 20.0).floor().max(1.0);
        let now = Instant::now();
        match self.stamp {
            Some(stamp) if self.rate == rate => {
                let earned = now.duration_since(stamp).as_secs_f64() * rate as f64;
                self.tokens = (self.tokens + earned).min(2.0 * step_max);
            }
            // A new rate (or the first use) starts afresh.
            _ => {
                self.rate = rate;
                self.tokens = step_max;
            }
        }
        self.stamp = Some(now);
        // Wait for a whole step rather than trickle single bytes: timers tick in ms.
        let step = (want as f64).min(step_max);
        if self.tokens >= step {
            self.tokens -= step;
            Ok(step as usize)
        } else {
            Err(Duration::from_secs_f64((step - self.tokens) / rate as f64))
        }
    }
}

/// Counts a connection as active for as long as it lives, even when its task is aborted.
struct Active<'a>(&'a AtomicU64);

impl<'a> Active<'a> {
    fn enter(counter: &'a AtomicU64) -> Active<'a> {
        Counters::add(counter, 1);
        Active(counter)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
