//! https targets: a real TLS server (rustls, certificates made by rcgen) on port 0. loadgen
//! trusts it through the scenario's `ca_file` — also a self-signed CA certificate used as
//! the server's own, as `curl --cacert` does — and only then, unless the scenario turns
//! verification off and no operator policy forbids it. Every refusal says whose
//! certificate, why and what to pass.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa};
use tokio_rustls::TlsAcceptor;

use crate::support::{Workspace, loadgen, only_entry, options, run_binary, run_ok, steady_get};

/// An HTTPS server that answers every request 200 and counts them.
struct TlsServer {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    /// The server's certificate, PEM: what a scenario's `ca_file` trusts.
    cert_pem: String,
    _runtime: tokio::runtime::Runtime,
}

impl TlsServer {
    /// With a plain (CA:FALSE) self-signed certificate for 127.0.0.1.
    fn start() -> TlsServer {
        TlsServer::presenting(certificate("server", &["127.0.0.1"], false))
    }

    fn presenting(params: CertificateParams) -> TlsServer {
        let (config, cert_pem) = crate::support::tls_config(params, &[]);
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

    fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

/// Certificate parameters: common name `name`, subjectAltNames `hosts`, and with `ca`
/// basicConstraints CA:TRUE — what `openssl req -x509` makes for a staging server.
fn certificate(name: &str, hosts: &[&str], ca: bool) -> CertificateParams {
    let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let mut params = CertificateParams::new(hosts).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    params
}

/// Two seconds at 40/s against `addr` over https; `target_lines` go under `[target]`
/// from line 4 on.
fn scenario(addr: SocketAddr, target_lines: &str) -> String {
    let body = steady_get(&format!("https://{addr}"), target_lines, 40, "2s", "/");
    format!("name = \"tls\"\n{body}")
}

/// Runs the real binary against a server presenting `params`, with `ca_file` trusting
/// `trusted` (PEM; the server's own when `None`). Returns the exit code and stderr, after
/// checking that the server served nothing when the run was refused.
fn refused_run(params: CertificateParams, trusted: Option<String>) -> (Option<i32>, String) {
    let server = TlsServer::presenting(params);
    let workspace = Workspace::new();
    workspace.write("ca.pem", trusted.as_deref().unwrap_or(&server.cert_pem));
    let file = workspace.write("tls.toml", &scenario(server.addr, "ca_file = \"ca.pem\"\n"));
    let output = run_binary(&file, &workspace.out());
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(server.served(), 0, "nothing was served: {stderr}");
    (output.status.code(), stderr)
}

#[test]
fn an_https_target_is_loaded_when_its_certificate_is_trusted() {
    let server = TlsServer::start();
    let workspace = Workspace::new();
    workspace.write("server.pem", &server.cert_pem);
    let file = workspace.write(
        "tls.toml",
        &scenario(server.addr, "ca_file = \"server.pem\"\n"),
    );
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    assert!(summary.totals.requests >= 60, "{:?}", summary.totals);
    assert_eq!(
        server.served(),
        summary.totals.requests,
        "every request loadgen counted reached the server over TLS"
    );
    assert!(summary.target.starts_with("https://"), "{}", summary.target);
    assert_eq!(summary.tls_verified, Some(true));
}

/// What `openssl req -x509` makes: a self-signed certificate with CA:TRUE, given as
/// `ca_file`. webpki alone refuses it (CaUsedAsEndEntity); loadgen accepts it as itself.
#[test]
fn a_self_signed_ca_certificate_in_ca_file_is_trusted_as_the_servers_own() {
    let server = TlsServer::presenting(certificate("staging", &["127.0.0.1"], true));
    let workspace = Workspace::new();
    workspace.write("staging.pem", &server.cert_pem);
    let file = workspace.write(
        "tls.toml",
        &scenario(server.addr, "ca_file = \"staging.pem\"\n"),
    );
    let (_, summary) = run_ok(&options(&file, &workspace.out()));
    assert_eq!(summary.totals.errors, 0, "{:?}", summary.totals);
    assert!(summary.totals.requests >= 60, "{:?}", summary.totals);
    assert_eq!(server.served(), summary.totals.requests);
    assert_eq!(summary.tls_verified, Some(true));
}

/// Trusted as itself, its names are still checked: the same kind of certificate made for
/// other hosts is refused, and the message names the hosts it is for.
#[test]
fn a_trusted_ca_certificate_for_another_host_is_refused_naming_its_hosts() {
    let params = certificate("staging", &["staging.example", "api.staging.example"], true);
    let (code, stderr) = refused_run(params, None);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains(
            "the certificate 127.0.0.1 presented (CN=staging) is issued for staging.example, api.staging.example, not 127.0.0.1"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("point base_url (or --target)"), "{stderr}");
}

#[test]
fn an_expired_certificate_is_refused_saying_when_it_expired() {
    let mut params = certificate("staging", &["127.0.0.1"], true);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 3, 4);
    let (code, stderr) = refused_run(params, None);
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("(CN=staging) expired on 2021-03-04 00:00:00 UTC (it is "),
        "{stderr}"
    );
    assert!(stderr.contains("renew it on the server"), "{stderr}");
}

/// A ca_file holding some other self-signed certificate: the message says the file holds a
/// different one, names it, and says what to put there — for a plain certificate (webpki:
/// unknown issuer) and a CA:TRUE one (webpki: a CA used as the server's own).
#[test]
fn a_ca_file_holding_a_different_certificate_is_refused_naming_both() {
    for ca in [false, true] {
        let other = certificate("other", &["127.0.0.1"], ca)
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem();
        let (code, stderr) = refused_run(certificate("server", &["127.0.0.1"], ca), Some(other));
        assert_eq!(code, Some(3), "{stderr}");
        assert!(stderr.contains("the certificate 127.0.0.1 presented (CN=server)"));
        assert!(
            stderr.contains("ca.pem holds a different certificate (CN=other)"),
            "{stderr}"
        );
        assert!(
            stderr.contains("in ca_file") || stderr.contains("in `ca_file`"),
            "{stderr}"
        );
        assert!(stderr.contains("tls_verify = false"), "{stderr}");
    }
}

#[test]
fn an_untrusted_certificate_stops_the_run_before_any_request() {
    let server = TlsServer::start();
    let workspace = Workspace::new();
    let file = workspace.write("tls.toml", &scenario(server.addr, ""));
    let output = run_binary(&file, &workspace.out());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("(CN=server) is self-signed, and no ca_file trusts it; pass it as `ca_file` (or `--ca-file`)"),
        "{stderr}"
    );
    assert!(!stderr.contains("is unreachable"), "it answered: {stderr}");
    assert_eq!(server.served(), 0);
}

/// An operator policy with `tls_verify = true` forbids turning verification off: validate
/// and run refuse at the key's position (exit 2), and nothing connects to the target.
#[test]
fn tls_verify_false_under_a_policy_forbidding_it_sends_nothing() {
    // A listener nobody accepts on: a connection loadgen made would wait in its queue.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let workspace = Workspace::new();
    let policy = workspace.write("policy.toml", "[target]\ntls_verify = true\n");
    let file = workspace.write(
        "tls.toml",
        &scenario(listener.local_addr().unwrap(), "tls_verify = false\n"),
    );
    let (file, policy, out) = (
        file.to_str().unwrap(),
        policy.to_str().unwrap(),
        workspace.out(),
    );
    let refusal = format!(
        "tls.toml:4:14: error: tls_verify = false is forbidden by the operator policy ({policy}:2:14)"
    );
    let validate = loadgen(&["validate", file, "--policy", policy]);
    let stderr = String::from_utf8_lossy(&validate.stderr);
    assert_eq!(validate.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&refusal), "{stderr}");
    let run = loadgen(&[
        "run",
        file,
        "--policy",
        policy,
        "--out",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&refusal), "{stderr}");
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "no connection reached the target"
    );
    assert!(!out.exists(), "no run directory");
    // A policy that allows it (or none) lets the same scenario through.
    let allowing = workspace.write("allowing.toml", "[target]\ntls_verify = false\n");
    let validate = loadgen(&["validate", file, "--policy", allowing.to_str().unwrap()]);
    assert_eq!(validate.status.code(), Some(0));
}

/// Without a policy against it, `tls_verify = false` loads a server whose certificate
/// nothing trusts — and says so at the start, in summary.json and in report.html.
#[test]
fn tls_verify_false_loads_an_untrusted_server_and_says_so_everywhere() {
    let server = TlsServer::start();
    let workspace = Workspace::new();
    let file = workspace.write("tls.toml", &scenario(server.addr, "tls_verify = false\n"));
    let output = run_binary(&file, &workspace.out());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let notice = "certificate verification is off (tls_verify = false)";
    assert!(stderr.contains(&format!("warning: {notice}")), "{stderr}");
    let run_dir = only_entry(&workspace.out());
    let (summary, _) = crate::support::schema::assert_matches_schema(&run_dir);
    assert_eq!(summary["tls_verified"], false);
    let requests = summary["totals"]["requests"].as_u64().unwrap();
    assert!(requests >= 60, "{requests}");
    assert_eq!(server.served(), requests);
    let report = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        report.contains(&format!(r#"<p class="warn" id="tls-unverified">{notice}"#)),
        "the report shows the notice"
    );
}

#[test]
fn a_ca_file_or_tls_verify_on_a_plain_http_target_is_a_positioned_error() {
    let workspace = Workspace::new();
    let text = scenario(
        "127.0.0.1:9".parse().unwrap(),
        "ca_file = \"ca.pem\"\ntls_verify = true\n",
    )
    .replace("https://", "http://");
    let file = workspace.write("plain.toml", &text);
    let output = loadgen(&["validate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("plain.toml:4:11: error: `ca_file` only applies to an https:// base_url"),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("plain.toml:5:14: error: `tls_verify` only applies to an https:// base_url"),
        "{stderr}"
    );
    // Off and a file to trust at once: one of them is a mistake.
    let both = scenario(
        "127.0.0.1:9".parse().unwrap(),
        "ca_file = \"ca.pem\"\ntls_verify = false\n",
    );
    let file = workspace.write("both.toml", &both);
    let output = loadgen(&["validate", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("both.toml:4:11: error: `ca_file` has no use with `tls_verify = false`"),
        "{stderr}"
    );
}
