//! The node's own TLS listener (`http.tls_cert`, `http.tls_key`): rustls
//! with aws-lc-rs, the crypto the rest of Parley already builds, TLS 1.2
//! and 1.3, HTTP/1.1 (WebSocket upgrades need it).

use crate::StartError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

fn tls_error(what: &str, path: &str, e: impl std::fmt::Display) -> StartError {
    StartError::Tls(format!("{what} {path}: {e}"))
}

/// The server configuration from PEM files: the certificate chain (leaf
/// first) and its private key (PKCS#8, PKCS#1 or SEC1).
pub fn server_config(cert_path: &str, key_path: &str) -> Result<rustls::ServerConfig, StartError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| tls_error("http.tls_cert", cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error("http.tls_cert", cert_path, e))?;
    if certs.is_empty() {
        return Err(tls_error(
            "http.tls_cert",
            cert_path,
            "no CERTIFICATE in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| tls_error("http.tls_key", key_path, e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            tls_error(
                "http.tls_key",
                key_path,
                format!("does not fit the certificate: {e}"),
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
