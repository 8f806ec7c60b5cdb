//! Gleitzeit central hub: the Socket.IO server every component and client connects to.
//!
//! It keeps the registry of components ([`registry`]), routes envelopes by target (a
//! component id, one healthy instance of a type or capability, or a room), fans events out
//! to rooms, and serves `GET /health` and `GET /components` for people and dashboards.
//! It holds no workflow logic. Given a Redis URL, several hubs form one mesh ([`mesh`]):
//! a component on any hub is reachable from every other.
//!
//! Given a certificate and key ([`tls`]), it serves HTTPS and WSS instead of plain HTTP on
//! the same port.
//!
//! Every connection authenticates with an API key ([`auth`]); every event is authorised by
//! role, target and ownership ([`policy`]) and stamped with the sender's identity before it
//! is forwarded. Browsers are held to an origin allow-list ([`origin`]).
//!
//! Consumes (target `hub`): `register`, `heartbeat`, `deregister`, `subscribe`,
//! `unsubscribe`, `list_components`, `hub_status`, `shutdown_request`, and the identity
//! events `auth_whoami`, `auth_user_create`, `auth_user_list`, `auth_key_create`,
//! `auth_key_list`, `auth_key_revoke` ([`admin`]).
//! Emits: `registered`, `reply`, `gz_error`, `component_joined`, `component_left`,
//! `component_unhealthy` (room `components`), `shutdown`, `hub_shutting_down`, `metrics`
//! (to its own components, for `GET /metrics`: [`metrics`]); and every routed envelope
//! under its own event name.

#![forbid(unsafe_code)]

mod admin;
mod alerts;
pub mod auth;
mod dashboard;
pub mod http;
mod mesh;
mod metrics;
pub mod origin;
pub mod policy;
pub mod registry;
mod sockets;
pub mod tls;
mod watched;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use gleitzeit_runtime::{Shutdown, ShutdownTrigger};
use socketioxide::SocketIo;
use tracing::{info, warn};

pub use crate::auth::AuthMode;
use crate::auth::Authenticator;
use crate::registry::Registry;
pub use crate::tls::TlsFiles;

/// Hub settings.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Address to listen on (default 127.0.0.1).
    pub host: String,
    /// Port (default 8000; 0 picks a free one).
    pub port: u16,
    /// Heartbeat interval announced to components.
    pub heartbeat_interval: Duration,
    /// Silence after which a component is removed and announced as left.
    pub heartbeat_timeout: Duration,
    /// This hub's id.
    pub hub_id: String,
    /// Whether connections must present an API key (default: required).
    pub auth: AuthMode,
    /// Allow `--auth off` on an address beyond loopback (`--insecure-no-auth`).
    pub insecure_no_auth: bool,
    /// Where the key store lives (`<data dir>/auth.db`) when there is no mesh Redis.
    /// `None`: the default data dir.
    pub data_dir: Option<PathBuf>,
    /// Browser origins allowed besides the hub's own (e.g. `http://localhost:5173`).
    pub allowed_origins: Vec<String>,
    /// Redis URL of the hub mesh: hubs given the same one relay routes, rooms and their
    /// component tables to each other. `None`: a standalone hub.
    pub mesh_redis_url: Option<String>,
    /// Certificate and key for HTTPS/WSS. `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            host: "127.0.0.1".into(),
            port: 8000,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(15),
            hub_id: gleitzeit_runtime::default_component_id("hub"),
            auth: AuthMode::Required,
            insecure_no_auth: false,
            data_dir: None,
            allowed_origins: Vec::new(),
            mesh_redis_url: None,
            tls: None,
        }
    }
}

/// Errors that stop the hub from starting.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The ready file (`--ready-file`) could not be written.
    #[error("cannot write the ready file {}: {source}", path.display())]
    ReadyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("hub server failed: {0}")]
    Serve(std::io::Error),
    /// The mesh's Redis URL is not valid.
    #[error("hub mesh: {0}")]
    Mesh(String),
    /// The key store cannot be opened.
    #[error("key store: {0}")]
    KeyStore(String),
    /// Listening beyond loopback without authentication was not spelled out.
    #[error(
        "refusing to listen on {0} without authentication: anyone who reaches it could run \
         code through the providers; use --auth required (the default), or add \
         --insecure-no-auth if you really mean it"
    )]
    Insecure(SocketAddr),
    /// The TLS certificate or key cannot be used (GZ1012).
    #[error(
        "{code}: {0} (hint: {hint})",
        code = gleitzeit_protocol::ErrorCode::TlsConfig,
        hint = gleitzeit_protocol::ErrorCode::TlsConfig.hint()
    )]
    Tls(#[from] tls::TlsError),
}

/// Shared hub state.
pub(crate) struct HubState {
    pub(crate) io: SocketIo,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) config: HubConfig,
    pub(crate) started: Instant,
    pub(crate) routed: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) stop: ShutdownTrigger,
    pub(crate) mesh: Option<mesh::Mesh>,
    pub(crate) auth: Authenticator,
    /// Requests the hub itself sent (ownership questions), by envelope id.
    pub(crate) pending:
        Mutex<HashMap<String, tokio::sync::oneshot::Sender<gleitzeit_protocol::Envelope>>>,
    /// Workflow owners learned from the queue-manager (bounded; owners never change).
    pub(crate) owners: Mutex<HashMap<String, Option<String>>>,
    /// Messages per event, rejections per code, failed scrapes (`GET /metrics`).
    pub(crate) metrics: metrics::HubCounters,
}

impl HubState {
    pub(crate) fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A hub bound to its address, not yet serving.
pub struct BoundHub {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    config: HubConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl BoundHub {
    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` fires or a client asks the hub to stop.
    pub async fn serve(self, shutdown: Shutdown) -> Result<(), HubError> {
        let (layer, io) = SocketIo::builder()
            .max_buffer_size(65_536)
            .max_payload(64 * 1024 * 1024)
            .ws_max_message_size(64 * 1024 * 1024)
            .ws_max_frame_size(64 * 1024 * 1024)
            .build_layer();
        let (stop, stopped) = Shutdown::new();
        let (mesh, mesh_rx) = match &self.config.mesh_redis_url {
            Some(url) => {
                let (mesh, rx) = mesh::Mesh::start(url, &self.config.hub_id)
                    .map_err(|e| HubError::Mesh(e.to_string()))?;
                (Some(mesh), Some(rx))
            }
            None => (None, None),
        };
        let auth = open_authenticator(&self.config)?;
        let state = Arc::new(HubState {
            auth,
            pending: Mutex::new(HashMap::new()),
            owners: Mutex::new(HashMap::new()),
            metrics: metrics::HubCounters::new(),
            io: io.clone(),
            registry: Mutex::new(Registry::new(&self.config.hub_id)),
            config: self.config.clone(),
            started: Instant::now(),
            routed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            stop,
            mesh,
        });
        sockets::install(state.clone());
        // Background work stops with the server: `stopped` fires on the way out, and
        // nothing outlives `serve` (an in-process hub in a test leaves no task behind).
        let mut background = vec![
            tokio::spawn(sockets::reaper(state.clone(), stopped.clone())),
            tokio::spawn(sockets::revalidator(state.clone(), stopped.clone())),
        ];
        let mut intake = None;
        if let Some(rx) = mesh_rx {
            intake = Some(tokio::spawn(sockets::mesh_intake(state.clone(), rx)));
            background.push(tokio::spawn(sockets::mesh_ticker(
                state.clone(),
                stopped.clone(),
            )));
        }

        let app = http::router(state.clone())
            .layer(layer)
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(origin::Origins::new(&self.config.allowed_origins)),
                origin::guard,
            ))
            .layer(origin::cors(&self.config.allowed_origins));
        match &self.config.tls {
            Some(files) => info!(
                addr = %self.addr, hub_id = %self.config.hub_id, cert = %files.cert.display(),
                "central hub listening with TLS (HTTPS and WSS)"
            ),
            None => info!(addr = %self.addr, hub_id = %self.config.hub_id, "central hub listening"),
        }
        let graceful = {
            let state = state.clone();
            async move {
                tokio::select! {
                    _ = shutdown.wait() => {}
                    _ = stopped.wait() => {}
                }
                state.stop.fire();
                sockets::announce_shutdown(&state).await;
            }
        };
        let served = match self.tls {
            Some(tls) => {
                let listener = tls::TlsListener::new(self.listener, self.addr, tls);
                axum::serve(listener, app)
                    .with_graceful_shutdown(graceful)
                    .await
            }
            None => {
                // Small messages must not wait for Nagle's algorithm (40 ms stalls per hop).
                let listener = self.listener.tap_io(|tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY");
                    }
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(graceful)
                    .await
            }
        }
        .map_err(HubError::Serve);
        state.stop.fire();
        for task in background {
            let _ = task.await;
        }
        if let Some(intake) = intake {
            intake.abort();
        }
        served?;
        info!("central hub stopped");
        Ok(())
    }
}

/// Binds the listen address.
pub async fn bind(config: HubConfig) -> Result<BoundHub, HubError> {
    if let Ok(ip) = config
        .host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
    {
        // Refused before binding: nothing listens beyond loopback, not even for a moment.
        if !ip.is_loopback() && config.auth == AuthMode::Off && !config.insecure_no_auth {
            return Err(HubError::Insecure(SocketAddr::new(ip, config.port)));
        }
    }
    // A bad certificate or key stops the hub before it listens.
    let tls = config
        .tls
        .as_ref()
        .map(tls::load_server_config)
        .transpose()?;
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| HubError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| HubError::Bind {
        addr: addr.clone(),
        source,
    })?;
    if !bound.ip().is_loopback() && config.auth == AuthMode::Off {
        if !config.insecure_no_auth {
            return Err(HubError::Insecure(bound));
        }
        warn!(
            %bound,
            "the hub listens beyond loopback WITHOUT authentication (--insecure-no-auth): \
             anyone who can reach this port can run code through the providers"
        );
    }
    Ok(BoundHub {
        listener,
        addr: bound,
        config,
        tls,
    })
}

/// The key store (the mesh's Redis, else `auth.db` in the data dir) and the authenticator.
fn open_authenticator(config: &HubConfig) -> Result<Authenticator, HubError> {
    if config.auth == AuthMode::Off {
        warn!("authentication is OFF: every connection is the anonymous admin");
        return Ok(Authenticator::new(AuthMode::Off, None));
    }
    let store = match &config.mesh_redis_url {
        Some(url) => gleitzeit_auth::KeyStore::open_redis(url),
        None => {
            let dir = config
                .data_dir
                .clone()
                .unwrap_or_else(gleitzeit_runtime::default_data_dir);
            gleitzeit_auth::KeyStore::open_dir(&dir)
        }
    }
    .map_err(|e| HubError::KeyStore(e.to_string()))?;
    match store.users() {
        Ok(users) if users.is_empty() => warn!(
            "authentication is required but the key store has no users yet: \
             create the admin with `gz auth init`"
        ),
        Ok(_) => {}
        Err(e) => warn!(error = %e, "cannot read the key store yet"),
    }
    Ok(Authenticator::new(
        AuthMode::Required,
        Some(Arc::new(store)),
    ))
}

/// Binds and serves until `shutdown` fires.
pub async fn run(config: HubConfig, shutdown: Shutdown) -> Result<(), HubError> {
    bind(config).await?.serve(shutdown).await
}

impl HubConfig {
    /// A hub for tests: 127.0.0.1 on a port the kernel picks (read it from
    /// [`BoundHub::local_addr`]), fast heartbeats (0.3 s; silent components are removed
    /// after 1.5 s), keys required from the key store in `data_dir`.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> HubConfig {
        HubConfig {
            port: 0,
            heartbeat_interval: Duration::from_millis(300),
            heartbeat_timeout: Duration::from_millis(1500),
            data_dir: Some(data_dir.into()),
            ..HubConfig::default()
        }
    }
}
