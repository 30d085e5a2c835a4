//! TLS for https targets: rustls with the ring provider (already in the tree for the
//! Kubernetes client; no C toolchain beyond what ring needs). The server is verified against
//! the public web roots plus the scenario's `ca_file` (a staging CA, a self-signed cert);
//! there is no "skip verification" switch — trust the certificate instead.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};

use crate::scenario::plan::Protocol;

/// What every connection of a run needs to speak TLS to the target.
#[derive(Clone)]
pub struct TlsTarget {
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
pub enum Trust {
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

impl TlsTarget {
    /// Builds the client configuration once per run; `trust` adds certificates to the
    /// public roots. `protocol` decides what ALPN offers: `auto` both h2 and http/1.1 (the
    /// server picks), `h2` only h2, `http1` only http/1.1.
    pub fn new(host: &str, trust: Option<&Trust>, protocol: Protocol) -> Result<TlsTarget, String> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(trust) = trust {
            let what = trust.to_string();
            let certs: Vec<CertificateDer<'static>> = match trust {
                Trust::File(path) => CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("{what}: {e}"))?
                    .collect::<Result<_, _>>(),
                Trust::Pem { pem, .. } => {
                    CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>()
                }
            }
            .map_err(|e| format!("{what}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("{what}: no PEM certificate in it"));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| format!("{what}: {e}"))?;
            }
        }
        let mut config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = match protocol {
            Protocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Protocol::H2 | Protocol::H2c => vec![b"h2".to_vec()],
            Protocol::Http1 => vec![b"http/1.1".to_vec()],
        };
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("`{host}` cannot be checked against a certificate"))?;
        Ok(TlsTarget {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}
