//! HTTPS served by pushwarden itself, with rustls.
//!
//! Vaultwarden only accepts `https` URIs for its push relay and identity URIs, so an operator
//! who runs pushwarden as a push relay must be able to give it a certificate and key and have
//! it terminate TLS on its own, with no reverse proxy in front.
//!
//! [`load_server_config`] reads a PEM certificate chain and private key into a rustls
//! [`ServerConfig`] (aws-lc-rs provider, ALPN `http/1.1` only: pushwarden's WebSocket upgrade
//! is HTTP/1.1's, and a browser offered `h2` may try WebSockets over HTTP/2, RFC 8441). The
//! handshakes run in the edge's accept loop (`crate::edge`), each in its connection's own task
//! and within the header-read timeout, so a slow or silent client never holds up anyone else.

use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Counter of TLS handshakes that failed or timed out (label `reason`: `error` or `timeout`).
pub const HANDSHAKE_FAILURES_METRIC: &str = "pushwarden_tls_handshake_failures_total";

/// Reads a PEM certificate chain (end-entity certificate first) and a PEM private key (PKCS#8,
/// PKCS#1/RSA or SEC1/EC) and builds a rustls server configuration: aws-lc-rs provider, safe
/// default protocol versions (TLS 1.2 and 1.3), no client authentication, ALPN `http/1.1`.
pub fn load_server_config(cert_file: &Path, key_file: &Path) -> Result<Arc<ServerConfig>> {
    let cert_pem = std::fs::read(cert_file)
        .with_context(|| format!("reading TLS certificate file {}", cert_file.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS certificate file {}", cert_file.display()))?;
    if chain.is_empty() {
        bail!(
            "TLS certificate file {} contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
            cert_file.display()
        );
    }

    let key_pem = std::fs::read(key_file)
        .with_context(|| format!("reading TLS private key file {}", key_file.display()))?;
    crate::secrets::check_private(key_file, "the TLS private key file")?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => bail!(
            "TLS private key file {} contains no PEM private key \
             (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
            key_file.display()
        ),
        Err(e) => {
            return Err(anyhow!(e))
                .with_context(|| format!("parsing TLS private key file {}", key_file.display()))
        }
    };

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("choosing TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => anyhow!(
                "the private key in {} does not match the certificate in {}",
                key_file.display(),
                cert_file.display()
            ),
            other => anyhow!(other).context(format!(
                "using TLS certificate {} with private key {}",
                cert_file.display(),
                key_file.display()
            )),
        })?;
    // Not h2: WebSockets are upgraded the HTTP/1.1 way (see the module comment).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
