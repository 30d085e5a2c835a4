//! A bare HTTP/2 server (h2c, prior knowledge) that writes its own frames, so what it does
//! to which stream is exact rather than a race: the GOAWAY's last stream id, the streams
//! above and below it, a REFUSED_STREAM on a given stream. No HTTP/2 library: a frame is
//! nine bytes of header and a payload; a response is `:status: 200` (HPACK static index 8,
//! the one byte 0x88) and a DATA frame "ok".

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const ACK: u8 = 0x1;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const REFUSED_STREAM: u32 = 0x7;

/// What the first connection does.
#[derive(Debug, Clone, Copy)]
pub enum Script {
    /// Once `streams` streams are open on the first connection: GOAWAY(NO_ERROR) with
    /// `last` as the last stream id, 200 to the streams below `last`, nothing to `last`
    /// itself, then the connection closes. Every later connection answers everything.
    GoAway { streams: usize, last: u32 },
    /// On every connection, stream 3 is refused (RST_STREAM REFUSED_STREAM); all others
    /// are answered.
    RefuseStream3,
}

#[derive(Default)]
pub struct Counts {
    /// Streams answered 200: what the server processed.
    pub processed: AtomicU64,
    /// Streams it saw and did not process: above the GOAWAY's last id, or refused.
    pub unprocessed: AtomicU64,
    /// Streams the GOAWAY covered that the close cut off.
    pub cut_off: AtomicU64,
    pub connections: AtomicU64,
    /// Whether a connection has taken the script's part (the first to open a stream: the
    /// client's pre-flight probe connects without opening one).
    scripted: std::sync::atomic::AtomicBool,
}

pub struct BareH2 {
    pub port: u16,
    pub counts: Arc<Counts>,
}

impl BareH2 {
    pub fn start(script: Script) -> BareH2 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                shared.connections.fetch_add(1, Ordering::SeqCst);
                let counts = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, script, &counts);
                });
            }
        });
        BareH2 { port, counts }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn count(&self, which: impl Fn(&Counts) -> &AtomicU64) -> u64 {
        which(&self.counts).load(Ordering::SeqCst)
    }
}

fn frame(
    out: &mut TcpStream,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    let length = payload.len() as u32;
    let mut bytes = Vec::with_capacity(9 + payload.len());
    bytes.extend_from_slice(&length.to_be_bytes()[1..]);
    bytes.push(kind);
    bytes.push(flags);
    bytes.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    bytes.extend_from_slice(payload);
    out.write_all(&bytes)
}

fn answer(out: &mut TcpStream, stream: u32) -> std::io::Result<()> {
    frame(out, HEADERS, END_HEADERS, stream, &[0x88])?;
    frame(out, DATA, END_STREAM, stream, b"ok")
}

/// Reads one frame: (type, flags, stream id, payload).
fn read_frame(input: &mut TcpStream) -> std::io::Result<(u8, u8, u32, Vec<u8>)> {
    let mut head = [0u8; 9];
    input.read_exact(&mut head)?;
    let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; length];
    input.read_exact(&mut payload)?;
    Ok((head[3], head[4], stream, payload))
}

fn serve(mut socket: TcpStream, script: Script, counts: &Counts) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let mut preface = [0u8; 24];
    socket.read_exact(&mut preface)?;
    assert_eq!(&preface[..], PREFACE, "an h2c client with prior knowledge");
    frame(&mut socket, SETTINGS, 0, 0, &[])?;
    let mut waiting: Vec<u32> = Vec::new();
    let mut gone_away = false;
    let mut first: Option<bool> = None;
    loop {
        let (kind, flags, stream, payload) = read_frame(&mut socket)?;
        match kind {
            SETTINGS if flags & ACK == 0 => frame(&mut socket, SETTINGS, ACK, 0, &[])?,
            PING if flags & ACK == 0 => frame(&mut socket, PING, ACK, 0, &payload)?,
            HEADERS => match (script, {
                *first.get_or_insert_with(|| !counts.scripted.swap(true, Ordering::SeqCst))
            }) {
                (Script::RefuseStream3, _) if stream == 3 => {
                    counts.unprocessed.fetch_add(1, Ordering::SeqCst);
                    frame(
                        &mut socket,
                        RST_STREAM,
                        0,
                        stream,
                        &REFUSED_STREAM.to_be_bytes(),
                    )?;
                }
                (Script::GoAway { last, .. }, true) if gone_away => {
                    // Opened after the GOAWAY (the client had not seen it yet): above `last`.
                    assert!(stream > last);
                    counts.unprocessed.fetch_add(1, Ordering::SeqCst);
                }
                (Script::GoAway { streams, last }, true) => {
                    waiting.push(stream);
                    if waiting.len() < streams {
                        continue;
                    }
                    gone_away = true;
                    let mut goaway = last.to_be_bytes().to_vec();
                    goaway.extend_from_slice(&0u32.to_be_bytes());
                    frame(&mut socket, GOAWAY, 0, 0, &goaway)?;
                    for id in waiting.drain(..) {
                        if id < last {
                            answer(&mut socket, id)?;
                            counts.processed.fetch_add(1, Ordering::SeqCst);
                        } else if id == last {
                            counts.cut_off.fetch_add(1, Ordering::SeqCst);
                        } else {
                            counts.unprocessed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    // Read on a moment for streams the client opens before it sees the
                    // GOAWAY, then close: `last` is cut off unanswered.
                    socket.set_read_timeout(Some(std::time::Duration::from_millis(300)))?;
                }
                _ => {
                    answer(&mut socket, stream)?;
                    counts.processed.fetch_add(1, Ordering::SeqCst);
                }
            },
            _ => {}
        }
    }
}
