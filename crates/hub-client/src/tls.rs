//! Which certificate authorities a client trusts when it reaches a hub over TLS.
//!
//! A client trusts the system's roots and, when `GLEITZEIT_TLS_CA` names a PEM file (one
//! certificate or a bundle of several), those certificates too: that is how a hub whose
//! certificate comes from a private (or self-signed) CA is reached at an `https://` URL. The
//! websocket transport uses [`client_config`]; the CLI's HTTP calls add [`custom_ca`] to its
//! HTTP client, so both trust the same authorities.
//!
//! A CA file that cannot be read or holds no certificate is an error (GZ1012), never skipped:
//! a typo in the path would otherwise surface later as a puzzling certificate error. rustls
//! runs with the `ring` provider only.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tracing::debug;

/// The environment variable naming the extra CA file (PEM).
pub const CA_ENV: &str = "GLEITZEIT_TLS_CA";

/// Why the TLS trust settings could not be loaded (protocol code GZ1012).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read.
    #[error("cannot read the CA file {path} ({CA_ENV}): {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The CA file holds no usable PEM certificate.
    #[error("the CA file {path} ({CA_ENV}) holds no usable PEM certificate: {reason}")]
    NotPem {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS setup failed: {0}")]
    Setup(String),
}

impl From<TlsError> for GzError {
    fn from(e: TlsError) -> Self {
        GzError::new(ErrorCode::TlsConfig, e.to_string())
    }
}

/// The hint for a hub that could not be reached because of its certificate (`reason` is
/// the failure's text), if that is why.
pub fn certificate_hint(reason: &str) -> Option<&'static str> {
    reason.contains("certificate").then_some(
        "The hub's TLS certificate is not trusted (or not for this host name): set \
         GLEITZEIT_TLS_CA to the PEM file of the CA that signed it.",
    )
}

/// The CA file named by `GLEITZEIT_TLS_CA`, if it is set and not empty.
pub fn ca_path() -> Option<PathBuf> {
    std::env::var_os(CA_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// Every certificate in a PEM file (at least one, else [`TlsError::NotPem`]).
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let not_pem = |reason: String| TlsError::NotPem {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(not_pem(
            "no -----BEGIN CERTIFICATE----- block found".to_string(),
        ));
    }
    Ok(certs)
}

/// The certificates of `GLEITZEIT_TLS_CA` (none when it is not set).
pub fn custom_ca() -> Result<Vec<CertificateDer<'static>>, TlsError> {
    match ca_path() {
        Some(path) => load_ca_file(&path),
        None => Ok(Vec::new()),
    }
}

/// The rustls client settings: the system roots plus `GLEITZEIT_TLS_CA`. Built once per
/// process (the environment does not change while it runs).
pub fn client_config() -> Result<Arc<rustls::ClientConfig>, TlsError> {
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, TlsError>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let extra = custom_ca()?;
            build_client_config(ca_path().as_deref(), extra)
        })
        .clone()
}

fn build_client_config(
    ca_file: Option<&Path>,
    extra: Vec<CertificateDer<'static>>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        debug!(error = %e, "a system CA certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    debug!(added, ignored, "system CA certificates");
    for cert in extra {
        roots.add(cert).map_err(|e| TlsError::NotPem {
            path: ca_file.map(Path::to_path_buf).unwrap_or_default(),
            reason: format!("not a CA certificate: {e}"),
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "gz-hub-client-tls-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(name);
        let _ = std::fs::write(&path, contents);
        path
    }

    #[test]
    fn a_missing_ca_file_names_the_file_and_is_gz1012() {
        let path = std::env::temp_dir().join("gz-no-such-ca-file.pem");
        let err = load_ca_file(&path).err().map(GzError::from);
        let err = err.as_ref();
        assert_eq!(err.map(|e| e.code.as_str()), Some("GZ1012"));
        assert!(err.is_some_and(|e| e.message.contains("gz-no-such-ca-file.pem")));
        assert!(err.is_some_and(|e| e.hint.is_some()));
    }

    #[test]
    fn a_file_without_certificates_is_not_pem() {
        let path = temp_file("junk.pem", b"this is not a certificate\n");
        let err = load_ca_file(&path);
        assert!(matches!(err, Err(TlsError::NotPem { .. })), "{err:?}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_broken_pem_block_is_not_pem() {
        let path = temp_file(
            "broken.pem",
            b"-----BEGIN CERTIFICATE-----\n%%%%\n-----END CERTIFICATE-----\n",
        );
        let err = load_ca_file(&path);
        assert!(matches!(err, Err(TlsError::NotPem { .. })), "{err:?}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn client_settings_build_from_the_system_roots() {
        assert!(build_client_config(None, Vec::new()).is_ok());
    }
}
