//! A real HTTP/1.1 server on 127.0.0.1:0 that records every request it sees, so tests can
//! check loadgen's counts against the server's. Runs on its own thread and runtime.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub body: String,
}

/// When set, requests to `/work` that arrive in `[first + after, first + after + length)`
/// (first = the first `/work` request) are held until that window ends.
#[derive(Debug, Clone, Copy)]
pub struct Stall {
    pub after: Duration,
    pub length: Duration,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    members: AtomicU64,
    first_work: Mutex<Option<Instant>>,
    stall: Option<Stall>,
    store: Mutex<Store>,
    /// Requests to `/tail/…` so far: every 20th is the slow one.
    tail: AtomicU64,
    /// The first request to `/ramp/…`: its latency grows from then on.
    ramp_start: Mutex<Option<Instant>>,
}

/// A write store for verification tests: `POST /store/items {"value": V}` answers 201
/// `{"id", "value"}` and keeps it — except a value starting `lose` (acknowledged, not kept:
/// its id is in `lost`), `alter` (kept with `!` appended: changed behind the client's
/// back) or `commit-500` (kept, answered 500). `GET /store/items/{id}` reads it back (404
/// when absent), `GET /store/count` counts what is kept (in its body and in `X-Total-Count`), `GET /store/total` is a value
/// only `POST /store/bump` changes.
#[derive(Default)]
pub struct Store {
    next: u64,
    items: BTreeMap<u64, serde_json::Value>,
    pub lost: Vec<u64>,
    pub altered: Vec<u64>,
    pub total: i64,
}

pub struct TestServer {
    pub addr: SocketAddr,
    state: Arc<State>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with(None)
    }

    /// A server on IPv6 loopback (`[::1]:PORT`).
    pub fn start_v6() -> TestServer {
        Self::spawn("[::1]:0", None)
    }

    pub fn start_with(stall: Option<Stall>) -> TestServer {
        Self::spawn("127.0.0.1:0", stall)
    }

    fn spawn(bind: &'static str, stall: Option<Stall>) -> TestServer {
        let state = Arc::new(State {
            stall,
            ..State::default()
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown, mut shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread_state = state.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::bind(bind).await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    tokio::select! {
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let state = thread_state.clone();
                            tokio::spawn(async move {
                                let service = service_fn(move |request| handle(state.clone(), request));
                                let _ = http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                        _ = &mut shutdown_rx => break,
                    }
                }
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        TestServer {
            addr,
            state,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Ids the store acknowledged without keeping, and ids it changed after acknowledging.
    pub fn lost_and_altered(&self) -> (Vec<u64>, Vec<u64>) {
        let store = self.state.store.lock().unwrap();
        (store.lost.clone(), store.altered.clone())
    }

    /// Requests seen per "METHOD /path-without-query-or-ids" route.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for seen in self.seen() {
            *counts
                .entry(format!("{} {}", seen.method, route(&seen.path)))
                .or_default() += 1;
        }
        counts
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Replaces numeric path segments with `{id}` and drops the query.
pub fn route(path: &str) -> String {
    let path = path.split('?').next().unwrap_or("");
    path.split('/')
        .map(|segment| {
            if !segment.is_empty() && segment.chars().all(|c| c.is_ascii_digit()) {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn handle(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().to_string();
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let api_key = request
        .headers()
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let accepts = request
        .headers()
        .get("accept-encoding")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body_text = String::from_utf8_lossy(&body).into_owned();
    state.seen.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        authorization: authorization.clone(),
        body: body_text.clone(),
    });

    let segments: Vec<&str> = path
        .split('?')
        .next()
        .unwrap_or("")
        .trim_matches('/')
        .split('/')
        .collect();
    let response = match (method.as_str(), segments.as_slice()) {
        ("GET", ["hello"]) => text(StatusCode::OK, "hello"),
        // A JSON body in ENCODING, only to a client that offers it (406 otherwise).
        ("GET", ["encoded", encoding]) => {
            let json = format!(
                r#"{{"token":"{encoding}-token","padding":"{}"}}"#,
                "x".repeat(512)
            );
            let encoded = match *encoding {
                "gzip" => Some(gzip(json.as_bytes())),
                "br" => Some(brotli_encode(json.as_bytes())),
                // A zstd frame that inflates to 2 GiB of zeros from ~64 KB.
                "bomb" => Some(zstd_rle_bomb(2 << 30)),
                _ => None,
            };
            let wanted = if *encoding == "bomb" {
                "zstd"
            } else {
                encoding
            };
            offered(&accepts, wanted, encoded)
        }
        // A JSON body of LARGE_JSON bytes in ENCODING (gzip, deflate, br, zstd): a few
        // hundred bytes on the wire, past 256 KiB inflated.
        ("GET", ["encoded", "large", encoding]) => {
            offered(&accepts, encoding, large_json(encoding))
        }
        // A response "served by" NAME, as a platform's instance header says.
        ("GET", ["by", name]) => {
            let mut response = text(StatusCode::OK, "served");
            if let Ok(value) = name.parse() {
                response.headers_mut().insert("x-instance", value);
            }
            response
        }
        // A target that slows down over the run: MS milliseconds more per second since the
        // first request here.
        ("GET", ["ramp", per_second]) => {
            let start = *state
                .ramp_start
                .lock()
                .unwrap()
                .get_or_insert_with(Instant::now);
            let per_second: f64 = per_second.parse().unwrap_or(0.0);
            let ms = start.elapsed().as_secs_f64() * per_second;
            tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
            text(StatusCode::OK, "ramp")
        }
        // A known heavy tail: every 20th request 25 ms slower, every request EXTRA ms.
        ("GET", ["tail", extra]) => {
            let n = state.tail.fetch_add(1, Ordering::SeqCst);
            let ms = extra.parse::<u64>().unwrap_or(0) + if n % 20 == 19 { 25 } else { 0 };
            if ms > 0 {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            text(StatusCode::OK, "tail")
        }
        ("GET", ["work"]) => {
            stall_if_due(&state).await;
            text(StatusCode::OK, "done")
        }
        ("POST", ["api", "members"]) => {
            let id = state.members.fetch_add(1, Ordering::SeqCst) + 1;
            let echoed: serde_json::Value =
                serde_json::from_str(&body_text).unwrap_or(serde_json::Value::Null);
            let payload = serde_json::json!({"id": id, "auth": {"token": format!("tok-{id}")}, "echo": echoed});
            let mut response = json(StatusCode::CREATED, &payload);
            response
                .headers_mut()
                .insert("x-member-etag", format!("etag-{id}").parse().unwrap());
            response
        }
        ("GET", ["api", "members", id]) => {
            if authorization.as_deref() == Some(&format!("Bearer tok-{id}")) {
                json(
                    StatusCode::OK,
                    &serde_json::json!({"id": id.parse::<u64>().unwrap_or(0)}),
                )
            } else {
                text(StatusCode::UNAUTHORIZED, "wrong token")
            }
        }
        ("GET", ["slow", ms]) => {
            tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
            text(StatusCode::OK, "slow")
        }
        ("POST", ["store", "items"]) => {
            let value = serde_json::from_str::<serde_json::Value>(&body_text)
                .ok()
                .and_then(|b| b.get("value").cloned())
                .unwrap_or(serde_json::Value::Null);
            let text_value = value.as_str().unwrap_or("").to_string();
            let mut store = state.store.lock().unwrap();
            store.next += 1;
            let id = store.next;
            let acknowledged = serde_json::json!({"id": id, "value": value});
            if text_value.starts_with("lose") {
                store.lost.push(id);
            } else if text_value.starts_with("alter") {
                store.altered.push(id);
                store
                    .items
                    .insert(id, serde_json::Value::String(format!("{text_value}!")));
            } else {
                store.items.insert(id, value);
            }
            if text_value.starts_with("commit-500") {
                json(StatusCode::INTERNAL_SERVER_ERROR, &acknowledged)
            } else {
                json(StatusCode::CREATED, &acknowledged)
            }
        }
        ("GET", ["store", "items", id]) => {
            let store = state.store.lock().unwrap();
            match id
                .parse::<u64>()
                .ok()
                .and_then(|id| store.items.get(&id).map(|v| (id, v)))
            {
                Some((id, value)) => json(
                    StatusCode::OK,
                    &serde_json::json!({"id": id, "value": value}),
                ),
                None => text(StatusCode::NOT_FOUND, "no such item"),
            }
        }
        ("GET", ["store", "count"]) => {
            // The count also as a list API's header (json-server's X-Total-Count).
            let kept = state.store.lock().unwrap().items.len();
            let mut response = json(StatusCode::OK, &serde_json::json!({"items": kept}));
            response
                .headers_mut()
                .insert("x-total-count", kept.to_string().parse().unwrap());
            response
        }
        ("GET", ["store", "total"]) => {
            let total = state.store.lock().unwrap().total;
            json(StatusCode::OK, &serde_json::json!({"total": total}))
        }
        ("POST", ["store", "bump"]) => {
            state.store.lock().unwrap().total += 1;
            text(StatusCode::OK, "bumped")
        }
        // An error page that quotes the request (its API key among it) and runs long.
        ("GET", ["status", code, "echo"]) => owned_text(
            StatusCode::from_u16(code.parse().unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            format!(
                "upstream busy; key={api_key}; at {path}; {}",
                "x".repeat(400)
            ),
        ),
        // A redirect off loopback: a client must refuse to follow it.
        ("GET", ["away"]) => {
            let mut response = text(StatusCode::FOUND, "moved");
            response
                .headers_mut()
                .insert("location", "http://192.0.2.10/elsewhere".parse().unwrap());
            response
        }
        ("GET", ["status", code]) => text(
            StatusCode::from_u16(code.parse().unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "status",
        ),
        _ => text(StatusCode::NOT_FOUND, "no such route"),
    };
    Ok(response)
}

async fn stall_if_due(state: &State) {
    let Some(stall) = state.stall else { return };
    let first = *state
        .first_work
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    let begins = first + stall.after;
    let ends = begins + stall.length;
    let now = Instant::now();
    if now >= begins && now < ends {
        tokio::time::sleep(ends - now).await;
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn brotli_encode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &Default::default()).unwrap();
    out
}

/// The size of `/encoded/large/…`'s JSON once inflated: past 256 KiB, below 512 KiB.
pub const LARGE_JSON: usize = 290_000;

/// `/encoded/large/ENCODING`'s body, encoded once per encoding.
fn large_json(encoding: &str) -> Option<Vec<u8>> {
    static ENCODED: OnceLock<BTreeMap<&'static str, Vec<u8>>> = OnceLock::new();
    const HEAD: &[u8] = br#"{"token":"large","padding":""#;
    const TAIL: &[u8] = br#""}"#;
    let encoded = ENCODED.get_or_init(|| {
        let fill = LARGE_JSON - HEAD.len() - TAIL.len();
        let json = [HEAD, &vec![b'x'; fill], TAIL].concat();
        assert_eq!(json.len(), LARGE_JSON);
        BTreeMap::from([
            ("gzip", gzip(&json)),
            ("deflate", zlib(&json)),
            ("br", brotli_encode(&json)),
            (
                "zstd",
                ruzstd::encoding::compress_to_vec(
                    &json[..],
                    ruzstd::encoding::CompressionLevel::Fastest,
                ),
            ),
        ])
    });
    encoded.get(encoding).cloned()
}

/// `encoded` as `Content-Encoding: coding` JSON when the client offers that coding; 406
/// otherwise.
fn offered(accepts: &str, coding: &str, encoded: Option<Vec<u8>>) -> Response<Full<Bytes>> {
    match encoded {
        Some(bytes) if accepts.split(',').any(|e| e.trim() == coding) => {
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            response
                .headers_mut()
                .insert("content-encoding", coding.parse().unwrap());
            response
                .headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            response
        }
        _ => text(StatusCode::NOT_ACCEPTABLE, "encoding not offered"),
    }
}

/// HTTP's `deflate`: a zlib stream.
fn zlib(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A zstd frame of `total` zero bytes made of RLE blocks (4 bytes per 128 KiB): a
/// decompression bomb built by hand, with no compressor.
fn zstd_rle_bomb(total: u64) -> Vec<u8> {
    const BLOCK: u64 = 128 * 1024;
    // Magic; frame header: no content size, no checksum, no dictionary; window 2^17.
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 7 << 3];
    let blocks = total.div_ceil(BLOCK);
    for i in 0..blocks {
        let size = BLOCK.min(total - i * BLOCK);
        let last = u64::from(i + 1 == blocks);
        // Block header (3 bytes, little endian): last flag, type 1 (RLE), size.
        let header = last | (1 << 1) | (size << 3);
        frame.extend_from_slice(&header.to_le_bytes()[..3]);
        frame.push(0); // the byte repeated
    }
    frame
}

fn owned_text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    response
}
