//! A deliberately unreliable HTTP/1.1 server on 127.0.0.1:0 for the accounting property
//! test: every `every`-th request it reads gets the plan's misbehaviour (closed unanswered,
//! reset after the headers, never answered, a 5xx, a body past `max_body`), the rest a
//! 200. It counts every request it read, and the first-step requests of each journey
//! (paths `/j{J}/first`), so loadgen's counts can be checked against what it saw. Plain
//! threads and blocking sockets: nothing here shares loadgen's code or runtime.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Reads the request, closes the connection without a word.
    Close,
    /// Sends a 200's headers promising a body, then resets the connection.
    ResetAfterHeaders,
    /// Reads the request and never answers (until the client hangs up).
    Hang,
    /// Answers 503.
    ServerError,
    /// Answers 200 with a 64 KiB body.
    Oversize,
    /// Answers a connection's first request, reads its second and closes the connection
    /// unanswered: a kept-alive connection closed under a request (every connection,
    /// whatever `every` says).
    CloseKeptAlive,
}

pub const ALL_MISBEHAVIOURS: [Misbehaviour; 5] = [
    Misbehaviour::Close,
    Misbehaviour::ResetAfterHeaders,
    Misbehaviour::Hang,
    Misbehaviour::ServerError,
    Misbehaviour::Oversize,
];

struct State {
    misbehaviour: Option<Misbehaviour>,
    every: u64,
    requests: AtomicU64,
    first_steps: Vec<AtomicU64>,
    stopping: AtomicBool,
}

pub struct FaultyServer {
    pub port: u16,
    state: Arc<State>,
}

impl FaultyServer {
    /// `every`: one request in this many misbehaves (1: all of them; `None`: none does);
    /// `journeys`: how many journeys' first steps to count.
    pub fn start(misbehaviour: Option<Misbehaviour>, every: u64, journeys: usize) -> FaultyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            misbehaviour,
            every: every.max(1),
            requests: AtomicU64::new(0),
            first_steps: (0..journeys).map(|_| AtomicU64::new(0)).collect(),
            stopping: AtomicBool::new(false),
        });
        let accepting = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if accepting.stopping.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = accepting.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        FaultyServer { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every request read, answered or not.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Requests read for journey `journey`'s first step.
    pub fn first_steps(&self, journey: usize) -> u64 {
        self.state.first_steps[journey].load(Ordering::SeqCst)
    }
}

impl Drop for FaultyServer {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// One connection: requests read one after another (keep-alive) until one misbehaves in a
/// way that ends it, or the client closes.
fn serve(mut stream: TcpStream, state: &State) {
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    let mut on_this_connection = 0u64;
    loop {
        let Some(path) = read_request(&mut stream, &mut buffer) else {
            return;
        };
        on_this_connection += 1;
        let number = state.requests.fetch_add(1, Ordering::SeqCst);
        let path = path.split('?').next().unwrap_or_default();
        if let Some(journey) = path
            .strip_prefix("/j")
            .and_then(|rest| rest.strip_suffix("/first"))
            .and_then(|j| j.parse::<usize>().ok())
            && let Some(count) = state.first_steps.get(journey)
        {
            count.fetch_add(1, Ordering::SeqCst);
        }
        let misbehaviour = state.misbehaviour.filter(|m| match m {
            Misbehaviour::CloseKeptAlive => on_this_connection == 2,
            _ => number.is_multiple_of(state.every),
        });
        let answer: &[u8] = match misbehaviour {
            None => b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            Some(Misbehaviour::Close | Misbehaviour::CloseKeptAlive) => return,
            Some(Misbehaviour::ResetAfterHeaders) => {
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial");
                reset(stream);
                return;
            }
            Some(Misbehaviour::Hang) => {
                // Until the client gives up and closes.
                let mut sink = [0u8; 1024];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
                return;
            }
            Some(Misbehaviour::ServerError) => {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
            }
            Some(Misbehaviour::Oversize) => {
                let body = vec![b'x'; 64 * 1024];
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
                if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&body).is_err() {
                    return;
                }
                continue;
            }
        };
        if stream.write_all(answer).is_err() {
            return;
        }
    }
}

/// Reads one request head (and no body: the test's requests are GETs); its path, or
/// `None` when the client closed.
fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            buffer.drain(..end + 4);
            return head.split_whitespace().nth(1).map(str::to_string);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Closes with RST instead of FIN (SO_LINGER 0).
fn reset(stream: TcpStream) {
    let linger = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket descriptor owned by `stream`, and a `linger` of the size given.
    unsafe {
        nix::libc::setsockopt(
            stream.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_LINGER,
            (&linger as *const nix::libc::linger).cast(),
            std::mem::size_of::<nix::libc::linger>() as nix::libc::socklen_t,
        );
    }
    drop(stream);
}
