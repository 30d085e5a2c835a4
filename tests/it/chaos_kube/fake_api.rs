//! A fake Kubernetes API server: on 127.0.0.1:0 it answers with recorded-shape JSON from
//! `tests/fixtures/kube/` (chosen by each test's router) and records every call — method,
//! path, query, body — so a test checks the exact calls loadgen makes.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use loadgen::api::chaos::KubeBackend;

pub(super) fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/kube/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One request as the fake API server saw it.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub(super) method: String,
    pub(super) path: String,
    pub(super) query: String,
    pub(super) content_type: String,
    pub(super) body: String,
}

impl Call {
    /// `METHOD path?query`. kube builds queries by appending `&name=value` to `path?`, so
    /// the raw query starts with an empty pair, which the API server ignores; it is dropped
    /// here so the expected lines read like the API reference.
    pub(super) fn line(&self) -> String {
        match self.query.trim_start_matches('&') {
            "" => format!("{} {}", self.method, self.path),
            q => format!("{} {}?{q}", self.method, self.path),
        }
    }

    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{}: {e}", self.body))
    }

    pub(super) fn params(&self) -> BTreeMap<String, String> {
        self.query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let decode = |s: &str| {
                    percent_encoding::percent_decode_str(&s.replace('+', " "))
                        .decode_utf8_lossy()
                        .into_owned()
                };
                (decode(k), decode(v))
            })
            .collect()
    }
}

/// What the fake server answers.
pub(super) enum Reply {
    Json(u16, String),
    /// Watch events, one per line, `gap` apart, counted into `sent` once written; then the
    /// stream stays open (as a real watch does until its timeout) until the client goes away.
    Watch(Vec<String>, Duration, Arc<AtomicUsize>),
}

type Router = dyn Fn(&Call) -> Reply + Send + Sync;

pub(super) struct FakeApi {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FakeApi {
    pub(super) async fn start(router: impl Fn(&Call) -> Reply + Send + Sync + 'static) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let calls = Arc::new(Mutex::new(Vec::new()));
        let router: Arc<Router> = Arc::new(router);
        let seen = calls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (router, seen) = (router.clone(), seen.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let (router, seen) = (router.clone(), seen.clone());
                        async move { handle(request, &*router, &seen).await }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeApi { addr, calls }
    }

    pub(super) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(super) async fn backend(&self) -> KubeBackend {
        KubeBackend::connect(Some(&self.url())).await.unwrap()
    }

    pub(super) fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub(super) fn lines(&self) -> Vec<String> {
        self.calls().iter().map(Call::line).collect()
    }

    pub(super) fn mutating(&self) -> Vec<String> {
        self.calls()
            .iter()
            .filter(|c| c.method != "GET")
            .map(Call::line)
            .collect()
    }
}

async fn handle(
    request: Request<Incoming>,
    router: &Router,
    seen: &Mutex<Vec<Call>>,
) -> Result<Response<BoxBody<Bytes, Infallible>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or("").to_string(),
        content_type: parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let reply = router(&call);
    seen.lock().unwrap().push(call);
    let response = Response::builder().header("content-type", "application/json");
    Ok(match reply {
        Reply::Json(status, text) => response
            .status(status)
            .body(Full::new(Bytes::from(text)).boxed())
            .unwrap(),
        Reply::Watch(lines, gap, sent) => {
            let events = futures::stream::unfold(lines.into_iter(), move |mut lines| {
                let sent = sent.clone();
                async move {
                    tokio::time::sleep(gap).await;
                    match lines.next() {
                        Some(line) => {
                            sent.fetch_add(1, Ordering::SeqCst);
                            let frame = Frame::data(Bytes::from(line + "\n"));
                            Some((Ok::<_, Infallible>(frame), lines))
                        }
                        None => std::future::pending().await,
                    }
                }
            });
            response.body(StreamBody::new(events).boxed()).unwrap()
        }
    })
}

/// Waits until `sent` reaches `want` (the server wrote every event), then gives the client
/// a moment to read them. Polling rather than a fixed sleep keeps this robust on a busy box.
pub(super) async fn all_sent(sent: &AtomicUsize, want: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sent.load(Ordering::SeqCst) < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the fake API never sent every event"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
}

pub(super) fn ok(name: &str) -> Reply {
    Reply::Json(200, fixture(name))
}

pub(super) fn not_found() -> Reply {
    Reply::Json(404, fixture("status-404-deployment.json"))
}

/// Whether the call opens a watch (the run's readiness watch of a pod selector).
pub(super) fn watching(call: &Call) -> bool {
    call.params().get("watch").map(String::as_str) == Some("true")
}

/// A watch with no event that stays open: what a run's readiness watch gets where the
/// test is not about readiness.
pub(super) fn idle_watch() -> Reply {
    Reply::Watch(
        Vec::new(),
        Duration::from_millis(50),
        Arc::new(AtomicUsize::new(0)),
    )
}

impl FakeApi {
    /// Every call's line but the watches': what a fault itself asked for, in order (a
    /// readiness watch's first LIST is the same line as a resolve's, and stays).
    pub(super) fn requests(&self) -> Vec<String> {
        self.calls()
            .iter()
            .filter(|c| !watching(c))
            .map(Call::line)
            .collect()
    }
}
