//! TLS for a listener: a rustls server configuration (ring provider) from PEM files, with errors
//! that name the file and what is wrong with it.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key")]
    NoKey { path: String },
    #[error("the certificate and key cannot serve TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// A server configuration presenting the certificate chain in `cert` with the key in `key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let open = |path: &Path| {
        File::open(path)
            .map(BufReader::new)
            .map_err(|e| TlsError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    };
    let unreadable = |path: &Path, e: std::io::Error| TlsError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let chain = rustls_pemfile::certs(&mut open(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.display().to_string(),
        });
    }
    let private_key = rustls_pemfile::private_key(&mut open(key)?)
        .map_err(|e| unreadable(key, e))?
        .ok_or_else(|| TlsError::NoKey {
            path: key.display().to_string(),
        })?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)?;
    Ok(config)
}
