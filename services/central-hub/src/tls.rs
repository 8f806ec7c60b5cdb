//! HTTPS and WSS on the hub's port: a listener that finishes the TLS handshake before axum
//! sees a connection.
//!
//! `axum::serve` takes any [`axum::serve::Listener`]. [`TlsListener`] accepts TCP (with
//! `TCP_NODELAY`, like the plain listener), runs each handshake in its own task under
//! [`HANDSHAKE_TIMEOUT`], and hands finished streams to axum over a bounded channel, so a slow
//! or broken client never holds up the next accept. At most [`MAX_HANDSHAKES`] handshakes run
//! at once.
//!
//! The certificate chain and key come from PEM files ([`load_server_config`]); a missing,
//! unreadable or mismatched file stops the hub at startup with GZ1012 naming the file.
//! rustls runs with the `ring` provider only.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel's backlog.
pub const MAX_HANDSHAKES: usize = 1024;
/// Finished connections waiting for axum to take them.
const READY_QUEUE: usize = 128;

/// The hub's certificate chain and private key (`--tls-cert`, `--tls-key`), PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the hub's own certificate first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// Both files, or neither (plain HTTP); one without the other is an error.
    pub fn from_flags(
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<TlsFiles>, TlsError> {
        match (cert, key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles { cert, key })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Incomplete("--tls-cert without --tls-key")),
            (None, Some(_)) => Err(TlsError::Incomplete("--tls-key without --tls-cert")),
        }
    }
}

/// Why the hub's TLS settings could not be loaded (protocol code GZ1012, see
/// [`TlsError::to_gz_error`]).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of the two files was given.
    #[error(
        "{0}: give both the certificate and the key (GLEITZEIT_TLS_CERT, GLEITZEIT_TLS_KEY), \
         or neither for plain HTTP"
    )]
    Incomplete(&'static str),
    /// A file could not be read.
    #[error("cannot read the TLS {what} file {path}: {reason}", path = path.display())]
    Unreadable {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("the TLS {what} file {path} is not usable: {reason}", path = path.display())]
    Invalid {
        /// `certificate` or `key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The key does not fit the certificate, or rustls refused them.
    #[error(
        "the TLS certificate {cert} and key {key} cannot be used together: {reason}",
        cert = cert.display(), key = key.display()
    )]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        reason: String,
    },
}

impl TlsError {
    /// This error as the coded error people see (GZ1012 with its hint).
    pub fn to_gz_error(&self) -> GzError {
        GzError::new(ErrorCode::TlsConfig, self.to_string())
    }
}

/// Reads the certificate chain and key and builds the rustls server settings (HTTP/1.1).
pub fn load_server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_chain(&files.cert)?;
    let key = load_key(&files.key)?;
    let mismatch = |reason: String| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| mismatch(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Unreadable {
        what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |reason: String| TlsError::Invalid {
        what: "certificate",
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(&read("certificate", path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid(
            "no -----BEGIN CERTIFICATE----- block found".to_string(),
        ));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read("key", path)?).map_err(|e| TlsError::Invalid {
        what: "key",
        path: path.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no -----BEGIN PRIVATE KEY----- block found".to_string()
            }
            other => other.to_string(),
        },
    })
}

/// A TLS connection ready for HTTP, and the peer's address.
type Ready = (TlsStream<TcpStream>, SocketAddr);

/// A listener yielding connections whose TLS handshake is done.
pub struct TlsListener {
    ready: mpsc::Receiver<Ready>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener`. The accept task ends when this listener is dropped.
    pub fn new(
        listener: TcpListener,
        local: SocketAddr,
        config: Arc<rustls::ServerConfig>,
    ) -> TlsListener {
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        TlsListener { ready, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task lives as long as this receiver; nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, ready: mpsc::Sender<Ready>) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            _ = ready.closed() => return,
            permit = handshakes.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (tcp, peer) = tokio::select! {
            _ = ready.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    backoff_after(e).await;
                    continue;
                }
            },
        };
        // Small messages must not wait for Nagle's algorithm (40 ms stalls per hop).
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(error = %e, "could not set TCP_NODELAY");
        }
        let (acceptor, ready) = (acceptor.clone(), ready.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = ready.send((stream, peer)).await;
                }
                Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// A failed accept: a connection that died in the backlog is skipped; anything else (e.g.
/// out of file descriptors) is logged and waited out briefly instead of spinning.
async fn backoff_after(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    warn!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_or_neither() {
        let p = PathBuf::from;
        assert_eq!(TlsFiles::from_flags(None, None).ok(), Some(None));
        assert!(TlsFiles::from_flags(Some(p("c.pem")), Some(p("k.pem"))).is_ok_and(|f| f.is_some()));
        let err = TlsFiles::from_flags(Some(p("c.pem")), None).err();
        assert!(err.is_some_and(|e| e.to_gz_error().code == "GZ1012"
            && e.to_string().starts_with("--tls-cert without --tls-key")));
        assert!(TlsFiles::from_flags(None, Some(p("k.pem"))).is_err());
    }

    #[test]
    fn a_missing_file_is_named_in_a_coded_error() {
        let files = TlsFiles {
            cert: std::env::temp_dir().join("gz-no-such-cert.pem"),
            key: std::env::temp_dir().join("gz-no-such-key.pem"),
        };
        let err = load_server_config(&files)
            .err()
            .map(|e| e.to_gz_error().render());
        let err = err.unwrap_or_default();
        assert!(
            err.starts_with("GZ1012: cannot read the TLS certificate file"),
            "{err}"
        );
        assert!(err.contains("hint: "), "{err}");
        assert!(err.contains("gz-no-such-cert.pem"), "{err}");
    }

    #[test]
    fn files_without_pem_blocks_are_refused() {
        let dir = std::env::temp_dir().join(format!("gz-hub-tls-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let junk = dir.join("junk.pem");
        let _ = std::fs::write(&junk, "not pem at all\n");
        let files = TlsFiles {
            cert: junk.clone(),
            key: junk.clone(),
        };
        let err = load_server_config(&files).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("certificate file") && e.contains("junk.pem")),
            "{err:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
