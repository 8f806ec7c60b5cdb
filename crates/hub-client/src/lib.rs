//! The spoke side of the Gleitzeit hub, used by every service and by the CLI.
//!
//! [`HubClient::connect`] opens a Socket.IO connection (websocket transport, see
//! `transport.rs` for why it is not rust_socketio),
//! waits until the namespace is joined, registers the component (if it is one), and keeps
//! the connection alive: heartbeats carry the current load, a lost connection is rebuilt
//! with exponential backoff and the component re-registers and re-joins its rooms. What is
//! sent while disconnected waits in a bounded buffer.
//!
//! Requests are ordinary envelopes; the reply is matched by correlation id in a pending map
//! with a timeout (Socket.IO acks are not used). Incoming envelopes that are not replies are handed to the caller through a
//! channel at once, so a slow handler never stalls the receive loop.
//!
//! `https://` hub URLs are reached over `wss://` with rustls, trusting the system roots and
//! the CA file named by `GLEITZEIT_TLS_CA` ([`tls`]).

#![forbid(unsafe_code)]

mod answer;
mod assembler;
mod connection;
mod parts;
mod retry;
pub mod tls;
mod transport;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events;
use gleitzeit_protocol::limits::MESSAGE_PART_BYTES;
use gleitzeit_protocol::payloads::{RegisterPayload, SubscribePayload};
use gleitzeit_protocol::{Envelope, Reply, Target};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};

use crate::parts::Outbound;

pub use connection::preferred_index;
pub use parts::TextPiece;
pub use retry::is_retry_safe_failure;

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Hub URL, e.g. `http://127.0.0.1:8000`; several hubs of one mesh comma-separated
    /// (`http://a:8000,http://b:8000`): a lost connection moves on to the next.
    pub url: String,
    /// Registration data for components; `None` for plain clients (CLI, observers).
    pub registration: Option<RegisterPayload>,
    /// Default timeout of [`HubClient::request`].
    pub request_timeout: Duration,
    /// How many envelopes may wait while disconnected before sends fail.
    pub buffer_limit: usize,
    /// Give up on the first connection after this long (`None`: keep trying forever).
    pub initial_connect_timeout: Option<Duration>,
    /// Heartbeat interval for plain clients (components use the hub's interval).
    pub heartbeat_interval: Duration,
    /// Credentials sent in the Socket.IO handshake (`auth`, `{"api_key": KEY}`), if any.
    /// [`ClientConfig::client`] fills it from `GLEITZEIT_API_KEY`, the saved login or the
    /// local suite's key (see [`gleitzeit_runtime::credentials`]).
    pub auth: Option<Value>,
}

/// How often a plain client (the CLI, an observer) sends a heartbeat. A hub that died
/// without closing the connection (its host or container gone: no FIN, no RST) is noticed
/// after three unanswered ones, so a client moves on to the next hub within ~4 s instead of
/// waiting out a request timeout. Components use the interval the hub announces.
pub const PLAIN_HEARTBEAT: Duration = Duration::from_secs(1);

impl ClientConfig {
    /// A plain client (no registration) that fails fast when the hub is unreachable.
    pub fn client(url: impl Into<String>) -> Self {
        ClientConfig {
            url: url.into(),
            registration: None,
            request_timeout: Duration::from_secs(30),
            buffer_limit: 10_000,
            initial_connect_timeout: Some(Duration::from_secs(3)),
            heartbeat_interval: PLAIN_HEARTBEAT,
            auth: gleitzeit_runtime::credentials::api_key()
                .map(|(key, _)| serde_json::json!({ "api_key": key })),
        }
    }

    /// The same config presenting `key` instead.
    pub fn with_api_key(mut self, key: &str) -> Self {
        self.auth = Some(serde_json::json!({ "api_key": key }));
        self
    }

    /// The same config presenting `key` when one is given (else keeping the key found in
    /// the environment, see [`ClientConfig::client`]).
    pub fn with_optional_api_key(self, key: Option<&str>) -> Self {
        match key {
            Some(key) => self.with_api_key(key),
            None => self,
        }
    }

    /// A component that registers and waits for the hub as long as it takes.
    pub fn component(url: impl Into<String>, registration: RegisterPayload) -> Self {
        ClientConfig {
            registration: Some(registration),
            initial_connect_timeout: None,
            ..ClientConfig::client(url)
        }
    }
}

/// Errors of the client itself (as opposed to error replies, which are [`GzError`]s).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The hub could not be reached in time.
    #[error("cannot reach the hub at {url}: {reason}")]
    Unreachable {
        /// Hub URL.
        url: String,
        /// Last failure.
        reason: String,
    },
    /// The hub refused the registration.
    #[error("registration refused: {0}")]
    Registration(GzError),
    /// The client was shut down while connecting.
    #[error("client shut down")]
    Closed,
}

impl From<ClientError> for GzError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Registration(g) => g,
            ClientError::Unreachable { ref reason, .. } => {
                let hint = tls::certificate_hint(reason);
                let error = GzError::new(ErrorCode::HubUnreachable, e.to_string());
                match hint {
                    Some(h) => error.with_hint(h),
                    None => error,
                }
            }
            ClientError::Closed => GzError::new(ErrorCode::Disconnected, e.to_string()),
        }
    }
}

type Pending = Mutex<HashMap<String, oneshot::Sender<answer::Answer>>>;

/// State shared between the handle and the connection task.
struct Shared {
    config: ClientConfig,
    /// This client's id (the component id, or a random client id).
    id: String,
    pending: Pending,
    outbox: mpsc::Sender<Outbound>,
    incoming: mpsc::UnboundedSender<Envelope>,
    rooms: Mutex<Vec<String>>,
    load: AtomicU32,
    capacity: AtomicU32,
    metadata: Mutex<Option<Value>>,
    connected: watch::Sender<bool>,
    closing: AtomicBool,
    stop: watch::Sender<bool>,
    /// When the client was made; `last_traffic` counts from here.
    born: std::time::Instant,
    /// Milliseconds after `born` of the last envelope sent or received (heartbeats and
    /// answers aside).
    last_traffic: AtomicU64,
    /// Messages coming in parts (`assembler.rs`).
    parts: Mutex<assembler::Assembler>,
}

impl Shared {
    /// Notes traffic now.
    fn touch(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_traffic.store(ms, Ordering::Relaxed);
    }

    /// How long since the last traffic.
    fn quiet_for(&self) -> Duration {
        let since = self.born.elapsed().as_millis() as u64;
        Duration::from_millis(since.saturating_sub(self.last_traffic.load(Ordering::Relaxed)))
    }
}

/// A connection to the hub. Cheap to clone; all clones share one connection.
#[derive(Clone)]
pub struct HubClient {
    shared: Arc<Shared>,
}

/// Envelopes addressed to this client that are not replies to its requests.
pub type Incoming = mpsc::UnboundedReceiver<Envelope>;

impl HubClient {
    /// Connects, registers (for components) and starts the connection task.
    ///
    /// Returns once the first session is established: for plain clients within
    /// `initial_connect_timeout` or with [`ClientError::Unreachable`].
    pub async fn connect(config: ClientConfig) -> Result<(HubClient, Incoming), ClientError> {
        let id = match &config.registration {
            Some(r) => r.component_id.clone(),
            None => format!("client-{:08x}", rand::random::<u32>()),
        };
        let (outbox_tx, outbox_rx) = mpsc::channel(config.buffer_limit.max(1));
        let (incoming_tx, incoming_rx) = mpsc::unbounded_channel();
        let (connected, _) = watch::channel(false);
        let (stop, _) = watch::channel(false);
        let capacity = config
            .registration
            .as_ref()
            .map(|r| r.capacity)
            .unwrap_or(0);
        let shared = Arc::new(Shared {
            id,
            pending: Mutex::new(HashMap::new()),
            outbox: outbox_tx,
            incoming: incoming_tx,
            rooms: Mutex::new(Vec::new()),
            load: AtomicU32::new(0),
            capacity: AtomicU32::new(capacity),
            metadata: Mutex::new(None),
            connected,
            closing: AtomicBool::new(false),
            stop,
            born: std::time::Instant::now(),
            last_traffic: AtomicU64::new(0),
            parts: Mutex::new(assembler::Assembler::default()),
            config,
        });
        let (first_tx, first_rx) = oneshot::channel();
        tokio::spawn(connection::run(shared.clone(), outbox_rx, first_tx));
        match first_rx.await {
            Ok(Ok(())) => Ok((HubClient { shared }, incoming_rx)),
            Ok(Err(e)) => {
                shared.stop.send_replace(true);
                Err(e)
            }
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// This client's id (what the hub knows it by once registered).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// True while a session with the hub is up.
    pub fn is_connected(&self) -> bool {
        *self.shared.connected.borrow()
    }

    /// A watch that flips on every connect and disconnect (services use it to rebuild state
    /// after a reconnect).
    pub fn connection_watch(&self) -> watch::Receiver<bool> {
        self.shared.connected.subscribe()
    }

    /// Sends an envelope without waiting for anything. It waits in the bounded buffer while
    /// disconnected; when the buffer is full the send fails with GZ1031.
    pub fn send(&self, envelope: Envelope) -> Result<(), GzError> {
        self.send_outbound(Outbound::One(envelope))
    }

    /// Queues a message (whole or in parts), stamped with this client's id when it names
    /// no sender.
    fn send_outbound(&self, mut out: Outbound) -> Result<(), GzError> {
        out.set_source(&self.shared.id);
        self.shared.outbox.try_send(out).map_err(|e| {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "send buffer full while disconnected",
                mpsc::error::TrySendError::Closed(_) => "client closed",
            };
            GzError::new(ErrorCode::Disconnected, why)
        })
    }

    /// Sends an event to a target (fire and forget).
    pub fn emit(&self, target: Target, event: &str, payload: Value) -> Result<(), GzError> {
        self.send(Envelope::new(target, event, payload))
    }

    /// Sends a request and waits for its reply (default timeout).
    pub async fn request(
        &self,
        target: Target,
        event: &str,
        payload: Value,
    ) -> Result<Value, GzError> {
        let timeout = self.shared.config.request_timeout;
        self.request_with_timeout(target, event, payload, timeout)
            .await
    }

    /// Sends a request and waits for its reply at most `timeout`.
    pub async fn request_with_timeout(
        &self,
        target: Target,
        event: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, GzError> {
        self.request_envelope(Envelope::new(target, event, payload), timeout)
            .await
    }

    /// Sends a prepared request envelope and waits for its reply at most `timeout`.
    pub async fn request_envelope(
        &self,
        envelope: Envelope,
        timeout: Duration,
    ) -> Result<Value, GzError> {
        self.send_request(envelope)?.reply(timeout).await
    }

    /// Sends a request now, in order with what this client sent before and after it, and
    /// gives what waits for its reply ([`PendingReply::reply`]). A caller that hands the
    /// waiting to another task still has the request go out before its own next messages
    /// (a request sent from inside the spawned task leaves only once that task runs).
    pub fn send_request(&self, envelope: Envelope) -> Result<PendingReply, GzError> {
        self.send_awaiting(Outbound::One(envelope))
    }

    /// [`HubClient::send_request`] for a message that may be big: a payload kept as text
    /// ([`Envelope::raw`]) of more than [`gleitzeit_protocol::limits::MESSAGE_PART_BYTES`]
    /// goes in parts, which the receiving `hub-client` joins again (`docs/protocol.md`,
    /// "Big messages in parts"). Only for receivers that use this crate (the services and
    /// the CLI), never for browsers or the Python SDK.
    /// The parts are made one at a time as the connection takes them.
    pub fn send_request_in_parts(&self, envelope: Envelope) -> Result<PendingReply, GzError> {
        self.send_awaiting(Outbound::of_envelope(envelope, MESSAGE_PART_BYTES))
    }

    /// [`HubClient::send_request_in_parts`] for a request whose payload's JSON text is
    /// given as pieces that follow one another (such as a head written here and a spec
    /// kept as text): they are never joined into one buffer when the payload goes in
    /// parts. `head` gives everything but the payload. GZ8001 when the pieces do not make
    /// JSON (checked only for a payload small enough to go whole; the receiver checks the
    /// joined parts).
    pub fn send_request_of_text(
        &self,
        head: Envelope,
        text: Vec<TextPiece>,
    ) -> Result<PendingReply, GzError> {
        let out = Outbound::of_text(head, text, MESSAGE_PART_BYTES).map_err(|e| {
            GzError::new(
                ErrorCode::Internal,
                format!("a request whose payload is not JSON: {e}"),
            )
        })?;
        self.send_awaiting(out)
    }

    /// Sends a request (whole or in parts) and gives what waits for its reply.
    fn send_awaiting(&self, out: Outbound) -> Result<PendingReply, GzError> {
        let (id, event) = match &out {
            Outbound::One(env) => (env.id.clone(), env.event.clone()),
            Outbound::Parts(parts) => (parts.id().to_owned(), parts.event().to_owned()),
        };
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id.clone(), tx);
        if let Err(e) = self.send_outbound(out) {
            self.lock_pending().remove(&id);
            return Err(e);
        }
        Ok(PendingReply {
            client: self.clone(),
            id,
            event,
            rx,
        })
    }

    /// Answers a request envelope.
    pub fn reply(&self, request: &Envelope, reply: Reply) -> Result<(), GzError> {
        self.send(request.reply(reply))
    }

    /// Answers a request with a result or an error.
    pub fn respond(
        &self,
        request: &Envelope,
        result: Result<Value, GzError>,
    ) -> Result<(), GzError> {
        let reply = match result {
            Ok(v) => Reply::Ok { ok: v },
            Err(error) => Reply::Err { error },
        };
        self.reply(request, reply)
    }

    /// Answers a request with a result serialized straight to JSON text (for big replies:
    /// no tree of values is built), or an error.
    pub fn respond_serialized(
        &self,
        request: &Envelope,
        result: Result<impl serde::Serialize, GzError>,
    ) -> Result<(), GzError> {
        let reply = match result.map(|data| request.reply_ok_text(&data)) {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => request.reply_err(GzError::new(
                ErrorCode::Internal,
                format!("the reply could not be serialized: {e}"),
            )),
            Err(error) => request.reply_err(error),
        };
        self.send(reply)
    }

    /// Joins rooms (remembered and re-joined after a reconnect). Safe to repeat: a lost
    /// connection or a late answer is asked again within the request timeout.
    pub async fn subscribe(&self, rooms: &[String]) -> Result<(), GzError> {
        {
            let mut mine = self.lock_rooms();
            for r in rooms {
                if !mine.contains(r) {
                    mine.push(r.clone());
                }
            }
        }
        let payload = serde_json::to_value(SubscribePayload {
            rooms: rooms.to_vec(),
        })
        .unwrap_or(Value::Null);
        let timeout = self.shared.config.request_timeout;
        self.request_retrying(Target::Hub, events::SUBSCRIBE, payload, timeout, timeout)
            .await
            .map(|_| ())
    }

    /// Leaves rooms.
    pub async fn unsubscribe(&self, rooms: &[String]) -> Result<(), GzError> {
        self.lock_rooms().retain(|r| !rooms.contains(r));
        let payload = serde_json::to_value(SubscribePayload {
            rooms: rooms.to_vec(),
        })
        .unwrap_or(Value::Null);
        self.request(Target::Hub, events::UNSUBSCRIBE, payload)
            .await
            .map(|_| ())
    }

    /// Sets the load reported with the next heartbeat.
    pub fn set_load(&self, load: u32) {
        self.shared.load.store(load, Ordering::Relaxed);
    }

    /// Sets the capacity reported with the next heartbeat.
    pub fn set_capacity(&self, capacity: u32) {
        self.shared.capacity.store(capacity, Ordering::Relaxed);
    }

    /// Sets the metadata reported with the next heartbeat (the hub shows it in
    /// `/components`; providers publish their endpoints this way).
    pub fn set_metadata(&self, metadata: Value) {
        *lock(&self.shared.metadata) = Some(metadata);
    }

    /// Deregisters (components), flushes briefly and closes the connection.
    pub async fn close(&self) {
        if self.shared.closing.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.shared.config.registration.is_some() && self.is_connected() {
            let _ = self
                .request_with_timeout(
                    Target::Hub,
                    events::DEREGISTER,
                    Value::Null,
                    Duration::from_secs(2),
                )
                .await;
        }
        self.shared.stop.send_replace(true);
    }

    fn lock_pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<answer::Answer>>> {
        lock(&self.shared.pending)
    }

    fn lock_rooms(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        lock(&self.shared.rooms)
    }
}

/// Locks a std mutex, recovering from poisoning (the data are plain maps).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Registration data for this process: fills in version, host and pid.
pub fn registration(
    component_type: &str,
    component_id: String,
    capabilities: Vec<String>,
    capacity: u32,
    metadata: Value,
) -> RegisterPayload {
    RegisterPayload {
        component_type: component_type.to_string(),
        component_id,
        capabilities,
        capacity,
        load: 0,
        version: env!("CARGO_PKG_VERSION").to_string(),
        host: gleitzeit_runtime::hostname(),
        pid: std::process::id(),
        metadata,
    }
}

/// A component's answer to `ping`.
pub fn ping_reply(client: &HubClient) -> Value {
    serde_json::to_value(gleitzeit_protocol::replies::PingReply {
        component_id: client.id().to_string(),
        pid: std::process::id(),
    })
    .unwrap_or(Value::Null)
}

/// Waits for the next envelope a component must handle itself.
///
/// Answers `ping` requests, and returns `None` when the component should stop: `shutdown`
/// fired, the hub sent a `shutdown` request, or the client closed.
pub async fn next_envelope(
    client: &HubClient,
    incoming: &mut Incoming,
    shutdown: &gleitzeit_runtime::Shutdown,
) -> Option<Envelope> {
    loop {
        let env = tokio::select! {
            env = incoming.recv() => env?,
            _ = shutdown.wait() => return None,
        };
        match env.event.as_str() {
            events::SHUTDOWN => {
                tracing::info!(by = %env.source, "shutdown requested through the hub");
                return None;
            }
            events::PING => {
                let _ = client.respond(&env, Ok(ping_reply(client)));
            }
            events::HUB_SHUTTING_DOWN => {
                tracing::info!("hub is shutting down; will reconnect when it is back");
            }
            _ => return Some(env),
        }
    }
}

/// Connects a component, retrying until the hub answers or `shutdown` fires (`None`).
pub async fn connect_component(
    config: ClientConfig,
    shutdown: &gleitzeit_runtime::Shutdown,
) -> Result<Option<(HubClient, Incoming)>, ClientError> {
    tokio::select! {
        r = HubClient::connect(config) => r.map(Some),
        _ = shutdown.wait() => Ok(None),
    }
}

/// A request sent by [`HubClient::send_request`], its reply not yet in.
pub struct PendingReply {
    client: HubClient,
    id: String,
    event: String,
    rx: oneshot::Receiver<answer::Answer>,
}

impl PendingReply {
    /// Waits for the reply at most `timeout` (GZ timeout error then; the late reply is
    /// dropped when it comes).
    pub async fn reply(self, timeout: Duration) -> Result<Value, GzError> {
        self.answer(timeout).await?.into_reply().into_result()
    }

    /// [`PendingReply::reply`] read straight from the reply's text into `T` (no tree of
    /// values in between: a big reply, such as a resolution naming every task of a
    /// workflow, is parsed once). A reply that is not a `T` is a GZ7020 error.
    pub async fn reply_as<T: serde::de::DeserializeOwned>(
        self,
        timeout: Duration,
    ) -> Result<T, GzError> {
        self.answer(timeout).await?.into_typed()
    }

    async fn answer(self, timeout: Duration) -> Result<answer::Answer, GzError> {
        match tokio::time::timeout(timeout, self.rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(GzError::new(
                ErrorCode::Disconnected,
                "client closed before the reply arrived",
            )),
            Err(_) => {
                self.client.lock_pending().remove(&self.id);
                Err(GzError::new(
                    ErrorCode::RequestTimeout,
                    format!(
                        "no reply to {} within {:.1}s",
                        self.event,
                        timeout.as_secs_f64()
                    ),
                ))
            }
        }
    }
}
