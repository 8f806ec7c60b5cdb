//! The connection task: one Socket.IO session at a time, rebuilt with backoff when lost.
//!
//! A session is up once the namespace is joined (the `open` event) and, for components, the
//! hub answered `register`. While it is up, the task drains the outbox and sends heartbeats;
//! it ends when the hub closes it, an emit fails, or heartbeats go unanswered.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::payloads::{HeartbeatPayload, RegisteredPayload, SubscribePayload};
use gleitzeit_protocol::{events, Envelope, Reply, Target, SIO_ENVELOPE_EVENT};
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Payload, TransportType};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::{debug, info, warn};

use crate::{lock, ClientError, Shared};

/// How long to wait for the namespace to be joined and for the registration reply.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);
/// Heartbeats that may go unanswered before the session is considered dead.
const MAX_MISSED_HEARTBEATS: u32 = 3;

struct Session {
    client: Client,
    closed: Arc<Notify>,
    heartbeat_interval: Duration,
}

enum SessionError {
    /// Worth retrying (hub down, timeout, network).
    Transient(String),
    /// The hub refused us (bad registration or credentials): retrying will not help.
    Refused(GzError),
}

enum End {
    Stopped,
    Lost,
}

/// Runs sessions until the client is closed. Reports the first session's outcome on `first`.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut outbox: mpsc::Receiver<Envelope>,
    first: oneshot::Sender<Result<(), ClientError>>,
) {
    let mut first = Some(first);
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    let mut carry: Option<Envelope> = None;
    let mut stop = shared.stop.subscribe();
    loop {
        if *stop.borrow() {
            break;
        }
        match open_session(&shared).await {
            Ok(session) => {
                delay = Duration::from_millis(100);
                if let Some(tx) = first.take() {
                    let _ = tx.send(Ok(()));
                }
                info!(hub = %shared.config.url, id = %shared.id, "connected to hub");
                shared.connected.send_replace(true);
                let end = drive(&shared, &session, &mut outbox, &mut carry, &mut stop).await;
                shared.connected.send_replace(false);
                let _ = session.client.disconnect().await;
                if matches!(end, End::Stopped) {
                    break;
                }
                warn!(hub = %shared.config.url, "connection to hub lost; reconnecting");
            }
            Err(SessionError::Refused(e)) => {
                warn!(error = %e, "hub refused this client");
                if let Some(tx) = first.take() {
                    let _ = tx.send(Err(ClientError::Registration(e)));
                    return;
                }
            }
            Err(SessionError::Transient(reason)) => {
                debug!(%reason, "hub connection attempt failed");
                if let (Some(limit), Some(_)) = (shared.config.initial_connect_timeout, &first) {
                    if started.elapsed() >= limit {
                        if let Some(tx) = first.take() {
                            let _ = tx.send(Err(ClientError::Unreachable {
                                url: shared.config.url.clone(),
                                reason,
                            }));
                        }
                        return;
                    }
                }
            }
        }
        let jitter = Duration::from_millis(rand::random::<u64>() % 100);
        tokio::select! {
            _ = tokio::time::sleep(delay + jitter) => {}
            _ = stop.changed() => {}
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    if let Some(tx) = first.take() {
        let _ = tx.send(Err(ClientError::Closed));
    }
}

async fn open_session(shared: &Arc<Shared>) -> Result<Session, SessionError> {
    let opened = Arc::new(Notify::new());
    let closed = Arc::new(Notify::new());
    let connect_error: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));

    let on_open = opened.clone();
    let on_close = closed.clone();
    let on_error_slot = connect_error.clone();
    let on_error_open = opened.clone();
    let dispatch_to = shared.clone();
    let mut builder = ClientBuilder::new(shared.config.url.clone())
        .transport_type(TransportType::Websocket)
        .reconnect(false)
        .reconnect_on_disconnect(false)
        .on("open", move |_, _| {
            on_open.notify_one();
            async {}.boxed()
        })
        .on("close", move |_, _| {
            on_close.notify_one();
            async {}.boxed()
        })
        .on("error", move |payload, _| {
            let text = format!("{payload:?}");
            if text.contains("ConnectError") {
                *lock(&on_error_slot) = Some(text);
                on_error_open.notify_one();
            } else {
                debug!(error = %text, "socket.io client error");
            }
            async {}.boxed()
        })
        .on_any(move |event, payload, _| {
            dispatch(&dispatch_to, event.as_str(), payload);
            async {}.boxed()
        });
    if let Some(auth) = &shared.config.auth {
        builder = builder.auth(auth.clone());
    }

    let client = match tokio::time::timeout(OPEN_TIMEOUT, builder.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(SessionError::Transient(e.to_string())),
        Err(_) => return Err(SessionError::Transient("connect timed out".into())),
    };
    if tokio::time::timeout(OPEN_TIMEOUT, opened.notified())
        .await
        .is_err()
    {
        let _ = client.disconnect().await;
        return Err(SessionError::Transient(
            "namespace was not joined in time".into(),
        ));
    }
    let refused = lock(&connect_error).take();
    if let Some(err) = refused {
        let _ = client.disconnect().await;
        return Err(SessionError::Refused(GzError::new(
            ErrorCode::AuthInvalid,
            err,
        )));
    }

    let mut heartbeat_interval = shared.config.heartbeat_interval;
    if let Some(reg) = &shared.config.registration {
        let mut reg = reg.clone();
        reg.load = shared.load.load(Ordering::Relaxed);
        reg.capacity = shared.capacity.load(Ordering::Relaxed);
        let payload = serde_json::to_value(&reg).unwrap_or(Value::Null);
        let mut env = Envelope::new(Target::Hub, events::REGISTER, payload);
        env.source = shared.id.clone();
        let reply = match request_direct(shared, &client, env, OPEN_TIMEOUT).await {
            Ok(r) => r,
            Err(reason) => {
                let _ = client.disconnect().await;
                return Err(SessionError::Transient(reason));
            }
        };
        match reply.into_result() {
            Ok(v) => {
                if let Ok(r) = serde_json::from_value::<RegisteredPayload>(v) {
                    heartbeat_interval = Duration::from_millis(r.heartbeat_interval_ms.max(50));
                }
            }
            Err(e) => {
                let _ = client.disconnect().await;
                return Err(SessionError::Refused(e));
            }
        }
    }

    let rooms = lock(&shared.rooms).clone();
    if !rooms.is_empty() {
        let payload = serde_json::to_value(SubscribePayload { rooms }).unwrap_or(Value::Null);
        let mut env = Envelope::new(Target::Hub, events::SUBSCRIBE, payload);
        env.source = shared.id.clone();
        if let Err(e) = emit(&client, &env).await {
            let _ = client.disconnect().await;
            return Err(SessionError::Transient(e));
        }
    }
    Ok(Session {
        client,
        closed,
        heartbeat_interval,
    })
}

/// Sends a request on this session's client directly (not through the outbox) and waits.
async fn request_direct(
    shared: &Arc<Shared>,
    client: &Client,
    env: Envelope,
    timeout: Duration,
) -> Result<Reply, String> {
    let (tx, rx) = oneshot::channel();
    lock(&shared.pending).insert(env.id.clone(), tx);
    if let Err(e) = emit(client, &env).await {
        lock(&shared.pending).remove(&env.id);
        return Err(e);
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(reply)) => Ok(reply),
        _ => {
            lock(&shared.pending).remove(&env.id);
            Err(format!("no reply to {} in time", env.event))
        }
    }
}

async fn drive(
    shared: &Arc<Shared>,
    session: &Session,
    outbox: &mut mpsc::Receiver<Envelope>,
    carry: &mut Option<Envelope>,
    stop: &mut watch::Receiver<bool>,
) -> End {
    if let Some(env) = carry.take() {
        if emit(&session.client, &env).await.is_err() {
            *carry = Some(env);
            return End::Lost;
        }
    }
    let missed = Arc::new(AtomicU32::new(0));
    let mut heartbeat = tokio::time::interval(session.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                while let Ok(env) = outbox.try_recv() {
                    if emit(&session.client, &env).await.is_err() {
                        break;
                    }
                }
                return End::Stopped;
            }
            _ = session.closed.notified() => return End::Lost,
            msg = outbox.recv() => match msg {
                None => return End::Stopped,
                Some(env) => {
                    if emit(&session.client, &env).await.is_err() {
                        *carry = Some(env);
                        return End::Lost;
                    }
                }
            },
            _ = heartbeat.tick() => {
                if missed.load(Ordering::Relaxed) >= MAX_MISSED_HEARTBEATS {
                    warn!("heartbeats unanswered; dropping the session");
                    return End::Lost;
                }
                if send_heartbeat(shared, session, missed.clone()).await.is_err() {
                    return End::Lost;
                }
            }
        }
    }
}

/// Sends one heartbeat; a spawned waiter resets `missed` when the hub answers.
async fn send_heartbeat(
    shared: &Arc<Shared>,
    session: &Session,
    missed: Arc<AtomicU32>,
) -> Result<(), String> {
    let payload = HeartbeatPayload {
        load: shared.load.load(Ordering::Relaxed),
        capacity: shared
            .config
            .registration
            .as_ref()
            .map(|_| shared.capacity.load(Ordering::Relaxed)),
        metadata: None,
    };
    let mut env = Envelope::new(
        Target::Hub,
        events::HEARTBEAT,
        serde_json::to_value(payload).unwrap_or(Value::Null),
    );
    env.source = shared.id.clone();
    let (tx, rx) = oneshot::channel();
    lock(&shared.pending).insert(env.id.clone(), tx);
    missed.fetch_add(1, Ordering::Relaxed);
    let id = env.id.clone();
    emit(&session.client, &env).await?;
    let wait = session.heartbeat_interval * MAX_MISSED_HEARTBEATS;
    let shared = shared.clone();
    tokio::spawn(async move {
        match tokio::time::timeout(wait, rx).await {
            Ok(Ok(_)) => missed.store(0, Ordering::Relaxed),
            _ => {
                lock(&shared.pending).remove(&id);
            }
        }
    });
    Ok(())
}

async fn emit(client: &Client, env: &Envelope) -> Result<(), String> {
    let value = serde_json::to_value(env).map_err(|e| e.to_string())?;
    client
        .emit(SIO_ENVELOPE_EVENT, value)
        .await
        .map_err(|e| e.to_string())
}

/// Routes one incoming Socket.IO event: replies complete pending requests, everything else
/// goes to the incoming channel. Runs inside rust_socketio's receive loop, so it never waits.
fn dispatch(shared: &Arc<Shared>, event: &str, payload: Payload) {
    #[allow(deprecated)]
    let value = match payload {
        Payload::Text(values) => values.into_iter().next(),
        Payload::String(s) => serde_json::from_str(&s).ok(),
        Payload::Binary(_) => None,
    };
    let Some(value) = value else {
        warn!(event, "hub sent an event without a JSON payload");
        return;
    };
    let env: Envelope = match serde_json::from_value(value) {
        Ok(e) => e,
        Err(e) => {
            warn!(event, error = %e, "hub sent an event that is not an envelope");
            return;
        }
    };
    let is_answer = matches!(
        env.event.as_str(),
        events::REPLY | events::REGISTERED | events::ERROR
    );
    if is_answer {
        if let Some(cid) = &env.correlation_id {
            if let Some(tx) = lock(&shared.pending).remove(cid) {
                let _ = tx.send(answer_of(&env));
                return;
            }
        }
        if env.event == events::REPLY {
            debug!(correlation_id = ?env.correlation_id, "late reply dropped");
            return;
        }
        if env.event == events::ERROR {
            warn!(payload = %env.payload, "hub reported an error");
        }
    }
    let _ = shared.incoming.send(env);
}

fn answer_of(env: &Envelope) -> Reply {
    match env.event.as_str() {
        events::REGISTERED => Reply::Ok {
            ok: env.payload.clone(),
        },
        events::ERROR => match serde_json::from_value::<GzError>(env.payload.clone()) {
            Ok(error) => Reply::Err { error },
            Err(_) => Reply::Err {
                error: GzError::new(ErrorCode::Internal, format!("hub error: {}", env.payload)),
            },
        },
        _ => serde_json::from_value::<Reply>(env.payload.clone()).unwrap_or_else(|e| Reply::Err {
            error: GzError::new(ErrorCode::InvalidPayload, format!("malformed reply: {e}")),
        }),
    }
}
