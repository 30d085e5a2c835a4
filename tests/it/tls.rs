//! https targets: a real TLS server (rustls, a certificate made for 127.0.0.1 by rcgen) on
//! port 0. loadgen trusts it through the scenario's `ca_file`, and only then.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio_rustls::TlsAcceptor;

use crate::support::{Workspace, loadgen, options, run_binary, run_ok};

/// An HTTPS server that answers every request 200 and counts them.
struct TlsServer {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    /// The server's certificate, PEM: what a scenario's `ca_file` trusts.
    cert_pem: String,
    _runtime: tokio::runtime::Runtime,
}

impl TlsServer {
    fn start() -> TlsServer {
        let (config, cert_pem) = crate::support::self_signed_tls(&[]);
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let (runtime, listener) = crate::support::server_runtime(1);
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    // A client that rejects the certificate ends the handshake: nothing served.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |_request| {
                        counter.fetch_add(1, Ordering::Relaxed);
                        async {
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from("ok"))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TlsServer {
            addr,
            served,
            cert_pem,
            _runtime: runtime,
        }
    }
}

fn scenario(addr: SocketAddr, ca_file: Option<&str>) -> String {
    let ca = ca_file.map_or(String::new(), |f| format!("ca_file = \"{f}\"\n"));
    format!(
        r#"name = "tls"
[target]
base_url = "https://{addr}"
{ca}[load]
model = "open"
start_rate = "40/s"
[[load.stage]]
duration = "2s"
rate = "40/s"
[[journey]]
name = "page"
[[journey.step]]
name = "get"
url = "/"
"#
    )
}

#[test]
fn an_https_target_is_loaded_when_its_certificate_is_trusted() {
    let server = TlsServer::start();
    let workspace = Workspace::new();
    workspace.write("server.pem", &server.cert_pem);
    let file = workspace.write("tls.toml", &scenario(server.addr, Some("server.pem")));
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    assert!(summary.totals.requests >= 60, "{:?}", summary.totals);
    assert_eq!(
        server.served.load(Ordering::Relaxed),
        summary.totals.requests,
        "every request loadgen counted reached the server over TLS"
    );
    assert!(summary.target.starts_with("https://"), "{}", summary.target);
}

#[test]
fn an_untrusted_certificate_stops_the_run_before_any_request() {
    let server = TlsServer::start();
    let workspace = Workspace::new();
    let file = workspace.write("tls.toml", &scenario(server.addr, None));
    let output = run_binary(&file, &workspace.out());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    assert_eq!(server.served.load(Ordering::Relaxed), 0);
}

#[test]
fn a_ca_file_on_a_plain_http_target_is_a_positioned_error() {
    let workspace = Workspace::new();
    let text =
        scenario("127.0.0.1:9".parse().unwrap(), Some("ca.pem")).replace("https://", "http://");
    let file = workspace.write("plain.toml", &text);
    let output = loadgen(&["validate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("plain.toml:4:11: error: `ca_file` only applies to an https:// base_url"),
        "{stderr}"
    );
}
