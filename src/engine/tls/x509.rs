//! What loadgen reads out of a certificate itself: webpki checks a certificate but keeps
//! its fields private, and both the eased check (its dates, its purpose) and a refusal's
//! words (whose certificate, issued by whom) need some of them.

use std::time::Duration;

use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The fields of one certificate loadgen looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Facts {
    /// The subject's distinguished name as OpenSSL prints it (`CN=staging, O=Example`).
    pub subject: String,
    pub issuer: String,
    /// Subject and issuer are the same name: nobody else vouches for it.
    pub self_signed: bool,
    /// basicConstraints CA:TRUE.
    pub ca: bool,
    /// The host names and addresses of its subjectAltName (webpki's own list is in its
    /// debug notation).
    pub names: Vec<String>,
    pub not_before: UnixTime,
    pub not_after: UnixTime,
    /// `None` without an extendedKeyUsage extension (any use); else whether it lists
    /// serverAuth.
    pub server_auth: Option<bool>,
}

impl Facts {
    /// `None` when the DER is not a certificate x509-parser can read (webpki's refusal
    /// then says so on its own).
    pub(super) fn of(der: &CertificateDer<'_>) -> Option<Facts> {
        let (_, cert) = X509Certificate::from_der(der.as_ref()).ok()?;
        let validity = cert.validity();
        Some(Facts {
            subject: name(&cert.subject().to_string()),
            issuer: name(&cert.issuer().to_string()),
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            ca: cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|b| b.value.ca),
            names: cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .map(|san| san.value.general_names.iter().filter_map(host).collect())
                .unwrap_or_default(),
            not_before: unix(validity.not_before.timestamp()),
            not_after: unix(validity.not_after.timestamp()),
            server_auth: cert
                .extended_key_usage()
                .ok()
                .flatten()
                .map(|eku| eku.value.server_auth),
        })
    }
}

/// An empty name (allowed when the certificate has a subjectAltName) said as such.
fn name(text: &str) -> String {
    match text.trim() {
        "" => "no subject name".to_string(),
        text => text.to_string(),
    }
}

/// A subjectAltName entry a server name can match: a DNS name or an IP address.
fn host(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some(dns.to_string()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::Ipv4Addr::from(b).to_string()),
            16 => <[u8; 16]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::Ipv6Addr::from(b).to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// Dates before 1970 (which no server certificate carries) read as 1970.
fn unix(seconds: i64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(seconds.max(0) as u64))
}
