//! A refused server certificate in words a person can act on: whose certificate, why it
//! was refused, and what to pass instead. The verifier builds one with everything it saw
//! and hands it to rustls inside the error, so it comes out of the failed handshake whole;
//! the pre-flight says it before anything is sent.

use std::fmt;

use tokio_rustls::rustls::{CertificateError, Error, OtherError};

use super::x509::Facts;

/// Why the server's certificate was refused.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// What the verification said (a rustls error, webpki's where it had its own).
    pub cause: Error,
    /// The name the certificate had to carry (the base URL's host).
    pub host: String,
    /// What the certificate says; `None` when it could not be read.
    pub(super) certificate: Option<Facts>,
    /// The trust file as a message names it (`ca_file certs/ca.pem`); `None`: none given.
    pub(super) trust: Option<String>,
    /// What the trust file's certificates say.
    pub(super) trusted: Vec<Facts>,
    /// The trust file holds this very certificate.
    pub(super) held: bool,
}

impl Refusal {
    /// The refusal inside a failed handshake's error, if a certificate was refused.
    pub(crate) fn of(error: &std::io::Error) -> Option<&Refusal> {
        match error.get_ref()?.downcast_ref::<Error>()? {
            Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
                inner.downcast_ref::<Refusal>()
            }
            _ => None,
        }
    }

    /// Why, and what to do about it.
    fn reason(&self) -> (String, String) {
        let host = &self.host;
        let issuer = self.certificate.as_ref().map_or("?", |c| c.issuer.as_str());
        let Error::InvalidCertificate(cause) = &self.cause else {
            return (format!("is refused: {}", self.cause), String::new());
        };
        match cause {
            CertificateError::NotValidForNameContext { presented, .. } if presented.is_empty() => (
                "names no host at all (it has no subjectAltName)".into(),
                format!("give the server a certificate whose subjectAltName names {host}"),
            ),
            CertificateError::NotValidForNameContext { presented, .. } => (
                format!("is issued for {}, not {host}", self.names(presented)),
                format!(
                    "point base_url (or --target) at one of those names, or give the server a certificate for {host}"
                ),
            ),
            CertificateError::NotValidForName => (
                format!("is not issued for {host}"),
                format!("give the server a certificate for {host}"),
            ),
            CertificateError::ExpiredContext { time, not_after } => (
                format!("expired on {} (it is {} now)", date(*not_after), date(*time)),
                "renew it on the server".into(),
            ),
            CertificateError::Expired => (
                match &self.certificate {
                    Some(c) => format!("expired on {}", date(c.not_after)),
                    None => "has expired".into(),
                },
                "renew it on the server".into(),
            ),
            CertificateError::NotValidYetContext { time, not_before } => (
                format!(
                    "is not valid before {} (this machine's clock says {})",
                    date(*not_before),
                    date(*time)
                ),
                "check this machine's clock and the one of whoever made the certificate".into(),
            ),
            CertificateError::UnknownIssuer => self.unknown_issuer(issuer),
            CertificateError::BadSignature => (
                format!(
                    "names {issuer} as its issuer, but is not signed by the key of the {issuer} in {}",
                    self.trust.as_deref().unwrap_or("the public roots")
                ),
                "that file may hold another CA of the same name (an older one, another stack's): put the CA that signed this certificate there".into(),
            ),
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => (
                "is not meant for servers (its extendedKeyUsage lacks serverAuth)".into(),
                "give the server a certificate made with serverAuth".into(),
            ),
            CertificateError::BadEncoding => (
                "cannot be read as an X.509 certificate".into(),
                "check the certificate file the server is configured with".into(),
            ),
            CertificateError::UnsupportedSignatureAlgorithmContext { .. }
            | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => (
                "is signed with an algorithm loadgen cannot check".into(),
                "sign it with ECDSA, Ed25519 or RSA and SHA-256 or better".into(),
            ),
            CertificateError::Other(OtherError(inner))
                if inner.downcast_ref::<webpki::Error>()
                    == Some(&webpki::Error::CaUsedAsEndEntity) =>
            {
                self.ca_as_end_entity()
            }
            _ => (format!("is refused: {}", self.cause), String::new()),
        }
    }

    /// An issuer neither `ca_file` nor the public roots hold: a self-signed certificate, or
    /// one of a CA not trusted.
    fn unknown_issuer(&self, issuer: &str) -> (String, String) {
        let pass = "pass it as `ca_file` (or `--ca-file`)";
        match (&self.certificate, &self.trust) {
            (Some(c), Some(trust)) if c.self_signed => (
                format!(
                    "is self-signed, and {trust} holds a different certificate ({})",
                    self.trusted_names()
                ),
                format!("put this very certificate (or the CA that issued it) in {trust}"),
            ),
            (Some(c), None) if c.self_signed => (
                "is self-signed, and no ca_file trusts it".into(),
                pass.into(),
            ),
            (_, Some(trust)) => (
                format!(
                    "is issued by {issuer}, which is neither a CA in {trust} ({}) nor one of the public roots",
                    self.trusted_names()
                ),
                format!("pass the certificate of {issuer} as `ca_file` (or `--ca-file`)"),
            ),
            (_, None) => (
                format!(
                    "is issued by {issuer}, which is not one of the public roots (and no ca_file is given)"
                ),
                format!("pass the certificate of {issuer} as `ca_file` (or `--ca-file`)"),
            ),
        }
    }

    /// A CA's own certificate presented as the server's.
    fn ca_as_end_entity(&self) -> (String, String) {
        let why = "is a CA certificate (basicConstraints CA:TRUE) the server presents as its own";
        let fix = "put exactly this certificate in `ca_file` (or `--ca-file`): loadgen then accepts it as `curl --cacert` does; or give the server a certificate that CA issued";
        match &self.trust {
            Some(trust) if !self.held => (
                format!(
                    "{why}, and {trust} holds a different certificate ({})",
                    self.trusted_names()
                ),
                fix.into(),
            ),
            _ => (format!("{why}, and no ca_file holds it"), fix.into()),
        }
    }

    /// The names the certificate is issued for, as written (webpki's `presented` list is
    /// in its debug notation, `DnsName("a.example")`: the fallback).
    fn names(&self, presented: &[String]) -> String {
        match &self.certificate {
            Some(c) if !c.names.is_empty() => c.names.join(", "),
            _ => presented.join(", "),
        }
    }

    /// The trust file's certificates by subject (a few; a bundle may hold hundreds).
    fn trusted_names(&self) -> String {
        const SHOWN: usize = 3;
        let mut names: Vec<String> = self
            .trusted
            .iter()
            .take(SHOWN)
            .map(|c| c.subject.clone())
            .collect();
        if self.trusted.len() > SHOWN {
            names.push(format!("{} more", self.trusted.len() - SHOWN));
        }
        match names.is_empty() {
            true => "none that can be read".into(),
            false => names.join("; "),
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (why, fix) = self.reason();
        write!(f, "the certificate {} presented ", self.host)?;
        if let Some(c) = &self.certificate {
            write!(f, "({}) ", c.subject)?;
        }
        write!(f, "{why}")?;
        if !fix.is_empty() {
            write!(f, "; {fix}")?;
        }
        write!(
            f,
            ". If nothing else fits, `tls_verify = false` under [target] turns verification off \
             (unless the operator policy forbids it)"
        )
    }
}

impl std::error::Error for Refusal {}

/// A certificate's date as a person reads it.
fn date(time: rustls_pki_types::UnixTime) -> String {
    let seconds = i64::try_from(time.as_secs()).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| format!("{seconds} s after 1970"))
}
