//! `tls.chain`, `tls.name`, `tls.expiry` and `tls.redirect`.
//!
//! The handshake is verified by rustls against the system roots and `--ca-file`; the verifier
//! is wrapped to keep the chain the server sent, so a failure can still say which names the
//! certificate covers and when it expires.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use http::Method;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme,
};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::net::{seconds, Net, NoAnswer};
use crate::verdict::{Check, Problem};

/// Under this many days left, `tls.expiry` warns.
const EXPIRY_WARNING_DAYS: i64 = 14;

pub(super) async fn run(net: &Net) -> Vec<Check> {
    let (mut checks, redirect) = tokio::join!(certificate(net), redirect(net));
    checks.push(redirect);
    checks
}

/// What the server presented, and what rustls made of it.
struct Handshake {
    leaf: Option<CertificateDer<'static>>,
    result: Result<(), rustls::Error>,
}

async fn certificate(net: &Net) -> Vec<Check> {
    let handshake = match tokio::time::timeout(net.timeout, handshake(net)).await {
        Err(_) => Err(NoAnswer::Timeout(net.timeout)),
        Ok(result) => result,
    };
    let handshake = match handshake {
        Ok(h) => h,
        Err(e) => {
            return ["tls.chain", "tls.name", "tls.expiry"]
                .into_iter()
                .map(|id| {
                    Check::fail(
                        id,
                        format!("no TLS handshake: {e}"),
                        Some(Problem::Unreachable),
                    )
                })
                .collect()
        }
    };
    let Some(leaf) = handshake.leaf else {
        let why = handshake
            .result
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no certificate".into());
        return ["tls.chain", "tls.name", "tls.expiry"]
            .into_iter()
            .map(|id| {
                Check::fail(
                    id,
                    format!("no certificate: {why}"),
                    Some(Problem::TlsChain),
                )
            })
            .collect();
    };
    let parsed = match X509Certificate::from_der(&leaf) {
        Ok((_, cert)) => cert,
        Err(e) => {
            return vec![Check::fail(
                "tls.chain",
                format!("the certificate does not parse: {e}"),
                Some(Problem::TlsChain),
            )]
        }
    };
    let host = net.target.server_name();
    let names = names_of(&parsed);
    let chain = match &handshake.result {
        Ok(()) => Check::pass("tls.chain", format!("valid, issued by {}", parsed.issuer())),
        // The chain was fine; the name or the dates were not (their own checks say so).
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => Check::pass("tls.chain", format!("valid, issued by {}", parsed.issuer())),
        Err(rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => Check::fail("tls.chain", "the certificate has expired", Some(Problem::TlsExpiry)),
        Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => Check::fail(
            "tls.chain",
            format!(
                "not trusted: issuer {} is not a known root and the server sent no intermediate leading to one (serve the full chain; for a private CA, --ca-file)",
                parsed.issuer()
            ),
            Some(Problem::TlsChain),
        ),
        Err(e) => Check::fail("tls.chain", format!("not valid: {e}"), Some(Problem::TlsChain)),
    };
    let name = if covers(&names, &host) {
        Check::pass("tls.name", format!("{host} is covered by the certificate"))
    } else {
        Check::fail(
            "tls.name",
            format!(
                "the certificate is for {}, not {host}",
                if names.is_empty() {
                    "no name".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            Some(Problem::TlsName),
        )
    };
    vec![chain, name, expiry(&parsed)]
}

fn expiry(cert: &X509Certificate<'_>) -> Check {
    let not_after = cert.validity().not_after.timestamp();
    let now = chrono::Utc::now().timestamp();
    let days = (not_after - now).div_euclid(86_400);
    let date = chrono::DateTime::from_timestamp(not_after, 0)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    if not_after <= now {
        Check::fail(
            "tls.expiry",
            format!("expired on {date}"),
            Some(Problem::TlsExpiry),
        )
    } else if days < EXPIRY_WARNING_DAYS {
        Check::warn(
            "tls.expiry",
            format!("{days} days left (until {date}); renewal should have happened by now"),
            Some(Problem::TlsExpiry),
        )
    } else {
        Check::pass("tls.expiry", format!("{days} days left (until {date})"))
    }
}

/// The DNS and IP names of the certificate (its subject alternative names; the common name
/// only when there are none, as old certificates have).
fn names_of(cert: &X509Certificate<'_>) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push(dns.to_string()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(cn) = cn.as_str() {
                names.push(cn.to_owned());
            }
        }
    }
    names
}

/// Whether `host` matches one of `names` (a `*.` wildcard stands for exactly one label).
fn covers(names: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    names.iter().any(|name| {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match name.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => name == host,
        }
    })
}

async fn handshake(net: &Net) -> Result<Handshake, NoAnswer> {
    let host = net.target.server_name();
    let port = net.target.port();
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| NoAnswer::Connection(format!("{host}:{port}: {e}")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = WebPkiServerVerifier::builder_with_provider(net.roots.clone(), provider.clone())
        .build()
        .map_err(|e| NoAnswer::Tls(format!("no trusted roots to verify with: {e}")))?;
    let keeper = Arc::new(KeepChain {
        inner,
        leaf: Mutex::new(None),
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| NoAnswer::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(keeper.clone())
        .with_no_client_auth();
    let name =
        ServerName::try_from(host.clone()).map_err(|e| NoAnswer::Tls(format!("{host}: {e}")))?;
    let result = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    let leaf = keeper.leaf.lock().ok().and_then(|leaf| leaf.clone());
    let result = match result {
        Ok(_) => Ok(()),
        Err(e) => {
            let tls_error = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .cloned();
            match tls_error {
                Some(error) => Err(error),
                None if leaf.is_some() => Err(rustls::Error::General(e.to_string())),
                None => return Err(NoAnswer::Tls(e.to_string())),
            }
        }
    };
    Ok(Handshake { leaf, result })
}

/// The system's verifier, keeping the certificate it was shown.
#[derive(Debug)]
struct KeepChain {
    inner: Arc<WebPkiServerVerifier>,
    leaf: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for KeepChain {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut leaf) = self.leaf.lock() {
            *leaf = Some(end_entity.clone().into_owned());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `http://host/` (port 80) should redirect to https; a host without port 80 open is only
/// warned about (clients are given the https URL anyway).
async fn redirect(net: &Net) -> Check {
    const ID: &str = "tls.redirect";
    let url = net.target.plain_http_root();
    let shown = url.to_string();
    match net.fetch(Method::GET, url, &[], None, net.timeout).await {
        Err(NoAnswer::Timeout(d)) => Check::warn(
            ID,
            format!(
                "{shown}: no answer within {}; port 80 closed or filtered?",
                seconds(d)
            ),
            Some(Problem::HttpsRedirect),
        ),
        Err(e) => Check::warn(
            ID,
            format!("{shown} is not reachable ({e}); fine if port 80 is closed on purpose"),
            Some(Problem::HttpsRedirect),
        ),
        Ok(answer) => {
            let location = answer
                .headers
                .get(http::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if answer.status.is_redirection() && location.starts_with("https://") {
                Check::pass(
                    ID,
                    format!(
                        "{shown} redirects ({}) to {location}",
                        answer.status.as_u16()
                    ),
                )
            } else {
                Check::fail(
                    ID,
                    format!(
                        "{shown} answers {} without redirecting to https",
                        answer.status.as_u16()
                    ),
                    Some(Problem::HttpsRedirect),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_wildcards() {
        let names = vec!["vault.example.com".to_owned(), "*.example.org".to_owned()];
        assert!(covers(&names, "vault.example.com"));
        assert!(covers(&names, "VAULT.example.com."));
        assert!(covers(&names, "a.example.org"));
        assert!(!covers(&names, "example.org"));
        assert!(!covers(&names, "a.b.example.org"));
        assert!(!covers(&names, "other.example.com"));
        assert!(covers(&["127.0.0.1".to_owned()], "127.0.0.1"));
    }

    /// A self-signed certificate for `names` that ends `days_left` days from now.
    fn certificate(names: &[&str], days_left: i64) -> Vec<u8> {
        use chrono::Datelike;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let end = chrono::Utc::now() + chrono::Duration::days(days_left);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn expiry_warns_under_two_weeks_and_fails_once_past() {
        let verdict = |days| {
            let der = certificate(&["h"], days);
            let (_, cert) = X509Certificate::from_der(&der).unwrap();
            expiry(&cert)
        };
        let soon = verdict(5);
        assert_eq!(soon.verdict, crate::Verdict::Warn, "{soon:?}");
        assert!(
            soon.detail.starts_with("4 days left") || soon.detail.starts_with("5 days left"),
            "{soon:?}"
        );
        assert_eq!(verdict(60).verdict, crate::Verdict::Pass);
        let past = verdict(-3);
        assert_eq!(past.verdict, crate::Verdict::Fail, "{past:?}");
        assert!(past.detail.starts_with("expired on "), "{past:?}");
    }

    #[test]
    fn names_come_from_the_alternative_names() {
        let der = certificate(&["vault.example.com", "10.0.0.1"], 30);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(names_of(&cert), ["vault.example.com", "10.0.0.1"]);
    }
}
