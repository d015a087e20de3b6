//! TLS for `ferry serve` (rustls, aws-lc-rs): a certificate chain and its key in PEM.
//! HTTP/1.1 only, as the plain listener; TLS 1.2 and 1.3 with rustls' safe defaults.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

use super::access::{ServeError, refuse_open};

/// The acceptor for `--tls-cert CERT --tls-key KEY`; the key file must not be readable by
/// others, the chain must hold at least one certificate, and the key must be the leaf's.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let bad = |path: &Path, reason: String| ServeError::Tls {
        path: path.to_path_buf(),
        reason,
    };
    let read = |path: &Path, what| {
        std::fs::read(path).map_err(|source| ServeError::Read {
            what,
            path: path.to_path_buf(),
            source,
        })
    };
    let chain_pem = read(cert, "certificate file")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, format!("not a PEM certificate chain ({e})")))?;
    if chain.is_empty() {
        return Err(bad(cert, "holds no PEM certificate".into()));
    }
    refuse_open(key, "TLS key")?;
    let key_pem = read(key, "TLS key")?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| bad(key, format!("not a PEM private key ({e})")))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(|e| bad(key, format!("does not go with the certificate ({e})")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
