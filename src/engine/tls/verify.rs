//! The run's certificate verifier: webpki's own with one case eased, or none at all for
//! `tls_verify = false` (`Verifier::off`). Either way the handshake's signature is checked
//! with the provider's algorithms: that is what proves the server holds the key of the
//! certificate it sent, whatever is concluded about the certificate.

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::{WebPkiServerVerifier, verify_server_name};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::server::ParsedCertificate;
use tokio_rustls::rustls::{
    CertificateError, DigitallySignedStruct, Error, OtherError, SignatureScheme,
};

use super::refusal::Refusal;
use super::x509::Facts;

/// webpki's verification against the public roots and the trust file, except that a
/// certificate the trust file holds byte for byte may say CA:TRUE. webpki refuses such a
/// certificate as a server's own (`CaUsedAsEndEntity`); OpenSSL, and so `curl --cacert`,
/// accept a trusted certificate as itself, and `openssl req -x509` makes every staging
/// certificate that way. Its issuer needs no check (it is the trusted certificate); its
/// dates, purpose and names are checked here. Every refusal carries its words (`Refusal`).
#[derive(Debug)]
pub(super) struct Verifier {
    /// `None`: verification is off (`tls_verify = false`): any certificate is accepted.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The trust file's certificates, with what they say (for the words of a refusal).
    trusted: Vec<(CertificateDer<'static>, Option<Facts>)>,
    /// The trust file as a message names it (`ca_file certs/ca.pem`); `None`: the public
    /// roots alone.
    trust: Option<String>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Verifier {
    pub(super) fn new(
        webpki: Arc<WebPkiServerVerifier>,
        trusted: Vec<CertificateDer<'static>>,
        trust: Option<String>,
        provider: &CryptoProvider,
    ) -> Verifier {
        Verifier {
            webpki: Some(webpki),
            trusted: trusted
                .into_iter()
                .map(|der| {
                    let facts = Facts::of(&der);
                    (der, facts)
                })
                .collect(),
            trust,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// Accepts any certificate (`tls_verify = false`); the handshake signature is still
    /// checked.
    pub(super) fn off(provider: &CryptoProvider) -> Verifier {
        Verifier {
            webpki: None,
            trusted: Vec::new(),
            trust: None,
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(webpki) = &self.webpki else {
            return Ok(ServerCertVerified::assertion());
        };
        let refused = match webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(error) => error,
        };
        let facts = Facts::of(end_entity);
        let held = self.trusted.iter().any(|(der, _)| der == end_entity);
        let cause = match (&facts, held && ca_used_as_end_entity(&refused)) {
            (Some(facts), true) => match trusted_as_itself(end_entity, facts, server_name, now) {
                Ok(()) => return Ok(ServerCertVerified::assertion()),
                Err(error) => error,
            },
            _ => refused,
        };
        let refusal = Refusal {
            cause,
            host: server_name.to_str().into_owned(),
            certificate: facts,
            trust: self.trust.clone(),
            trusted: self.trusted.iter().filter_map(|(_, f)| f.clone()).collect(),
            held,
        };
        Err(CertificateError::Other(OtherError(Arc::new(refusal))).into())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// webpki's refusal of a CA certificate as a server's own (rustls passes it on as an
/// "other" error holding webpki's).
fn ca_used_as_end_entity(error: &Error) -> bool {
    match error {
        Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<webpki::Error>() == Some(&webpki::Error::CaUsedAsEndEntity)
        }
        _ => false,
    }
}

/// What webpki would still have checked of a trusted certificate had it not stopped at
/// CA:TRUE: valid now, meant for servers, issued for `server_name`.
fn trusted_as_itself(
    der: &CertificateDer<'_>,
    facts: &Facts,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), Error> {
    if now < facts.not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: facts.not_before,
        }
        .into());
    }
    if now > facts.not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: facts.not_after,
        }
        .into());
    }
    if facts.server_auth == Some(false) {
        return Err(CertificateError::InvalidPurpose.into());
    }
    verify_server_name(&ParsedCertificate::try_from(der)?, server_name)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    use tokio_rustls::rustls::RootCertStore;
    use tokio_rustls::rustls::crypto::ring;

    use super::*;

    /// A self-signed CA:TRUE certificate for `hosts`, valid in 2030 only.
    fn ca_certificate(hosts: &[&str]) -> CertificateDer<'static> {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let mut params = CertificateParams::new(hosts).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2031, 1, 1);
        params
            .self_signed(&KeyPair::generate().unwrap())
            .unwrap()
            .der()
            .clone()
    }

    fn verifier(trusted: &[CertificateDer<'static>]) -> Verifier {
        let provider = Arc::new(ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in trusted {
            roots.add(cert.clone()).unwrap();
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        Verifier::new(
            webpki,
            trusted.to_vec(),
            Some("ca_file ca.pem".into()),
            &provider,
        )
    }

    /// `days_in` days after new year of `year` (2029 to 2031: no leap day among them).
    fn day(year: u64, days_in: u64) -> UnixTime {
        const NEW_YEAR_2029: u64 = 1_861_920_000;
        let start = NEW_YEAR_2029 + (year - 2029) * 365 * 86_400;
        UnixTime::since_unix_epoch(Duration::from_secs(start + days_in * 86_400))
    }

    fn host(name: &str) -> ServerName<'static> {
        ServerName::try_from(name.to_string()).unwrap()
    }

    fn refusal(result: Result<ServerCertVerified, Error>) -> String {
        match result {
            Err(Error::InvalidCertificate(CertificateError::Other(OtherError(inner)))) => inner
                .downcast_ref::<Refusal>()
                .expect("a refusal in words")
                .to_string(),
            other => panic!("not a refusal: {other:?}"),
        }
    }

    #[test]
    fn a_trusted_ca_certificate_is_the_servers_own_only_while_valid_and_for_its_names() {
        let cert = ca_certificate(&["staging.example"]);
        let verifier = verifier(std::slice::from_ref(&cert));
        let check =
            |name: &str, now| verifier.verify_server_cert(&cert, &[], &host(name), &[], now);
        assert!(check("staging.example", day(2030, 100)).is_ok());
        let words = refusal(check("other.example", day(2030, 100)));
        assert!(
            words.contains("is issued for staging.example, not other.example"),
            "{words}"
        );
        let words = refusal(check("staging.example", day(2031, 10)));
        assert!(
            words.contains("expired on 2031-01-01 00:00:00 UTC"),
            "{words}"
        );
        let words = refusal(check("staging.example", day(2029, 10)));
        assert!(
            words.contains("is not valid before 2030-01-01 00:00:00 UTC"),
            "{words}"
        );
    }

    /// Without the trust file holding it byte for byte, a CA:TRUE certificate stays refused
    /// — also one of the same names and dates.
    #[test]
    fn a_ca_certificate_the_trust_file_does_not_hold_is_refused() {
        let trusted = ca_certificate(&["staging.example"]);
        let presented = ca_certificate(&["staging.example"]);
        let verifier = verifier(&[trusted]);
        let words = refusal(verifier.verify_server_cert(
            &presented,
            &[],
            &host("staging.example"),
            &[],
            day(2030, 100),
        ));
        assert!(
            words.contains("is a CA certificate (basicConstraints CA:TRUE) the server presents as its own, and ca_file ca.pem holds a different certificate"),
            "{words}"
        );
    }

    /// webpki's own checks stop before dates when the certificate is a CA, so the eased
    /// path checks them itself: tested apart from webpki's order.
    #[test]
    fn trusted_as_itself_checks_dates_purpose_and_name() {
        let cert = ca_certificate(&["staging.example"]);
        let facts = Facts::of(&cert).unwrap();
        let name = host("staging.example");
        assert!(trusted_as_itself(&cert, &facts, &name, day(2030, 1)).is_ok());
        assert!(matches!(
            trusted_as_itself(&cert, &facts, &name, day(2031, 1)),
            Err(Error::InvalidCertificate(
                CertificateError::ExpiredContext { .. }
            ))
        ));
        assert!(matches!(
            trusted_as_itself(&cert, &facts, &name, day(2029, 1)),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidYetContext { .. }
            ))
        ));
        assert!(matches!(
            trusted_as_itself(&cert, &facts, &host("other.example"), day(2030, 1)),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForNameContext { .. }
            ))
        ));
        let client_only = Facts {
            server_auth: Some(false),
            ..facts
        };
        assert!(matches!(
            trusted_as_itself(&cert, &client_only, &name, day(2030, 1)),
            Err(Error::InvalidCertificate(CertificateError::InvalidPurpose))
        ));
    }
}
