//! TLS for https targets: rustls with the ring provider (already in the tree for the
//! Kubernetes client; no C toolchain beyond what ring needs).
//!
//! By default the server's certificate is verified (`verify.rs`) against the public web
//! roots plus the certificates of a trust file (`ca_file`, `--ca-file`, a platform's CA):
//! signature chain, validity dates and host name, as webpki checks them. One case is eased,
//! the way `curl --cacert` eases it: a certificate the trust file holds byte for byte is
//! accepted as the server's own even when it says CA:TRUE (what `openssl req -x509` makes),
//! its dates and names still checked. A refusal says in words which certificate, why and
//! what to pass (`refusal.rs`).
//!
//! For what nothing else fits, `[target] tls_verify = false` turns verification off: any
//! certificate is accepted, only the handshake's signature is checked. An operator policy
//! can forbid it, and a run that does it says so at its start, in summary.json and in
//! report.html.

mod refusal;
mod verify;
mod x509;

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

pub(crate) use self::refusal::Refusal;
use crate::plan::Protocol;

/// What a run with `tls_verify = false` says wherever its figures are read: at its start,
/// in summary.json (`tls_verified: false`) and in report.html.
pub(crate) const UNVERIFIED_NOTICE: &str = "certificate verification is off (tls_verify = false): \
     the target's certificate was not checked, so whatever answered at its address was measured";

/// What every connection of a run needs to speak TLS to the target.
#[derive(Clone)]
pub(crate) struct TlsTarget {
    pub connector: TlsConnector,
    /// The name the certificate must carry: the base URL's host (a DNS name or an IP).
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Certificates to trust besides the public roots.
#[derive(Debug, Clone)]
pub(crate) enum Trust {
    /// A PEM file (`ca_file`, `--ca-file`, the local stack's CA).
    File(std::path::PathBuf),
    /// PEM text a platform adapter read, and where from.
    Pem { pem: String, from: String },
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::File(path) => write!(f, "ca_file {}", path.display()),
            Trust::Pem { from, .. } => write!(f, "the CA of {from}"),
        }
    }
}

impl Trust {
    /// Its certificates, in file order; none is an error (a trust file that trusts nothing
    /// is a mistake, not a choice).
    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        let certs: Vec<CertificateDer<'static>> = match self {
            Trust::File(path) => CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{self}: {e}"))?
                .collect::<Result<_, _>>(),
            Trust::Pem { pem, .. } => {
                CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>()
            }
        }
        .map_err(|e| format!("{self}: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{self}: no PEM certificate in it"));
        }
        Ok(certs)
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Check<'a> {
    /// Against the public roots and these certificates (see the module doc).
    Verify(Option<&'a Trust>),
    /// Not at all (`tls_verify = false`); the handshake signature still is.
    Off,
}

impl TlsTarget {
    /// Builds the client configuration once per run. `protocol` decides what ALPN offers:
    /// `auto` both h2 and http/1.1 (the server picks), `h2` only h2, `http1` only http/1.1.
    pub(crate) fn new(
        host: &str,
        check: Check<'_>,
        protocol: Protocol,
    ) -> Result<TlsTarget, String> {
        let alpn = match protocol {
            Protocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Protocol::H2 | Protocol::H2c => vec![b"h2".to_vec()],
            Protocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        let config = client_config(check, alpn)?;
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("`{host}` cannot be checked against a certificate"))?;
        Ok(TlsTarget {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// A rustls client configuration on the ring provider, verifying as `check` says, offering
/// `alpn`.
fn client_config(check: Check<'_>, alpn: Vec<Vec<u8>>) -> Result<ClientConfig, String> {
    let provider = Arc::new(ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match check {
        Check::Off => Arc::new(verify::Verifier::off(&provider)),
        Check::Verify(trust) => {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let certs = trust.map(Trust::certificates).transpose()?;
            for cert in certs.iter().flatten() {
                let what = trust.map(Trust::to_string).unwrap_or_default();
                roots
                    .add(cert.clone())
                    .map_err(|e| format!("{what}: {e}"))?;
            }
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| format!("TLS: {e}"))?;
            Arc::new(verify::Verifier::new(
                webpki,
                certs.unwrap_or_default(),
                trust.map(Trust::to_string),
                &provider,
            ))
        }
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn;
    Ok(config)
}

/// The control plane's HTTP client (remote write, Prometheus queries): reqwest over the
/// engine's rustls configuration on the ring provider (no aws-lc-rs in the tree), HTTP/1.1,
/// certificates verified against the public roots and `trust`, no proxy from the
/// environment (every byte goes where the allow-list said), no redirects followed; `pin`:
/// a host name held to the address the allow-list passed, never resolved again.
pub(crate) fn control_plane(
    trust: Option<&Trust>,
    pin: Option<(&str, std::net::SocketAddr)>,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, String> {
    let config = client_config(Check::Verify(trust), vec![b"http/1.1".to_vec()])?;
    let mut builder = reqwest::Client::builder();
    if let Some((host, address)) = pin {
        builder = builder.resolve(host, address);
    }
    builder
        .tls_backend_preconfigured(config)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .user_agent(concat!("loadgen/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the control plane's HTTP client: {e}"))
}
