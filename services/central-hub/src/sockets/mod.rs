//! Socket.IO handlers: authentication, envelope intake and the hub's own events; routing,
//! the mesh side, checks, asking components and background duties are in the sub-modules.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, component_types, rooms};
use gleitzeit_protocol::payloads::{
    ComponentInfo, ComponentLeft, RegisterPayload, RegisteredPayload, RoomsWatched,
};
use gleitzeit_protocol::replies::{
    DeregisterReply, HeartbeatReply, Reason, RoomsReply, ShutdownReply,
};
use gleitzeit_protocol::requests::{AdminRequest, HubRequest};
use gleitzeit_protocol::{Envelope, Identity, RawEnvelope, Reply, Target, SIO_ENVELOPE_EVENT};
use gleitzeit_runtime::Shutdown;
use serde_json::{json, Value};
use socketioxide::extract::{Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::auth::{key_from_auth_payload, key_from_headers, refusal_text, Session};
use crate::mesh::{Kind, MeshMessage};
use crate::policy::{self, RoomAccess};
use crate::registry::{Location, Verdict};
use crate::HubState;

mod asking;
mod checks;
mod lifecycle;
mod peering;
mod routing;

use asking::*;
use checks::*;
use routing::*;

pub(crate) use asking::ask;
pub(crate) use lifecycle::{announce_shutdown, disconnect_key, reaper, revalidator};
pub(crate) use peering::{mesh_intake, mesh_ticker};
pub(crate) use routing::broadcast;

/// Longest accepted id, source or event name.
const MAX_NAME_LEN: usize = 256;
/// Most capabilities one component may declare.
pub(crate) const MAX_CAPABILITIES: usize = 1_000;
/// Largest registration or heartbeat metadata (serialised JSON bytes).
const MAX_METADATA_BYTES: usize = 256 * 1024;
/// How long the hub waits for a queue-manager to say who owns a workflow.
const OWNER_TIMEOUT: Duration = Duration::from_secs(5);
/// Workflow owners remembered at most (the cache is cleared past it).
const MAX_CACHED_OWNERS: usize = 100_000;

/// Why a connection was refused; its text is the `connect_error` message.
#[derive(Debug)]
struct Refusal(String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connect middleware: authenticates the socket and keeps its [`Session`].
async fn authenticate_socket(
    state: &HubState,
    socket: &SocketRef,
    auth: Option<Value>,
) -> Result<(), Refusal> {
    let from_payload = auth.as_ref().and_then(key_from_auth_payload);
    let headers = &socket.req_parts().headers;
    let key = from_payload.or_else(|| key_from_headers(headers));
    match state.auth.authenticate(key).await {
        Ok(session) => {
            debug!(sid = %socket.id, user = %session.identity.user, role = %session.identity.role, "socket authenticated");
            socket.extensions.insert(session);
            Ok(())
        }
        Err(err) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            state.metrics.rejected(&err.code);
            warn!(sid = %socket.id, code = %err.code, reason = %err.message, "refused a connection");
            Err(Refusal(refusal_text(&err)))
        }
    }
}

/// The component a socket registered as.
#[derive(Debug)]
struct RegisteredAs {
    id: String,
    kind: String,
}

/// The session of an authenticated socket.
fn session_of(socket: &SocketRef) -> Option<Arc<Session>> {
    socket.extensions.get::<Arc<Session>>()
}

pub(crate) fn install(state: Arc<HubState>) {
    let io = state.io.clone();
    // The handlers are registered in the middleware, after authentication and before the
    // client gets its CONNECT: socketioxide sends CONNECT first and then runs the connect
    // handler in a task of its own, so a client that sends its first envelope at once could
    // otherwise reach a socket with no handler yet, and the envelope would be dropped without
    // a word (seen under load: a request left unanswered for its whole timeout).
    let middleware = move |socket: SocketRef, TryData(auth): TryData<Value>| {
        let state = state.clone();
        async move {
            authenticate_socket(&state, &socket, auth.ok()).await?;
            register_handlers(&state, &socket);
            Ok::<(), Refusal>(())
        }
    };
    let on_connect = |socket: SocketRef| async move {
        debug!(sid = %socket.id, "socket connected");
    };
    io.ns("/", on_connect.with(middleware));
}

/// Registers what an authenticated socket's events do.
fn register_handlers(state: &Arc<HubState>, socket: &SocketRef) {
    let on_env = state.clone();
    socket.on(
        SIO_ENVELOPE_EVENT,
        move |s: SocketRef, TryData(data): TryData<RawEnvelope>| {
            let state = on_env.clone();
            async move { intake(&state, &s, data.map_err(|e| e.to_string())).await }
        },
    );
    let on_other = state.clone();
    socket.on_fallback(move |s: SocketRef, Event(name): Event| {
        let state = on_other.clone();
        async move {
            let err = GzError::new(
                ErrorCode::UnknownEvent,
                format!("unknown Socket.IO event {name:?}: send envelopes as the {SIO_ENVELOPE_EVENT:?} event"),
            );
            reject(&state, &s, None, err);
        }
    });
    let on_gone = state.clone();
    socket.on_disconnect(move |s: SocketRef, reason: DisconnectReason| {
        let state = on_gone.clone();
        async move {
            let sid = s.id.to_string();
            let emptied = state.registry().leave_rooms(&sid, None);
            let removed = state.registry().remove_sid(&sid);
            tell_watched(&state);
            if emptied && removed.is_none() {
                share_components(&state);
            }
            if let Some(entry) = removed {
                info!(component = %entry.info.registration.component_id, ?reason, "component disconnected");
                announce_left(&state, &entry.info, "disconnected").await;
            }
        }
    });
}

/// Handles one incoming `envelope` event. The payload stays unparsed JSON text unless the
/// hub itself handles the event: routing never builds a tree of a (possibly huge) payload.
async fn intake(state: &Arc<HubState>, socket: &SocketRef, data: Result<RawEnvelope, String>) {
    let mut env = match data {
        Ok(env) => env,
        Err(e) => {
            let err = GzError::new(
                ErrorCode::InvalidPayload,
                format!("not a valid envelope: {e}"),
            );
            return reject(state, socket, None, err);
        }
    };
    if let Some(err) = check_sizes(&env) {
        return reject(state, socket, Some(answer_id(&env)), err);
    }
    let Some(session) = session_of(socket) else {
        let err = GzError::new(ErrorCode::AuthInvalid, "this socket is not authenticated");
        return reject(state, socket, Some(answer_id(&env)), err);
    };
    let sid = socket.id.to_string();
    // What this socket registered as (its key allowed it then): messages it sends while
    // its registry entry is being replaced or expired still come from that component.
    let (source, sender_type) = match socket.extensions.get::<Arc<RegisteredAs>>() {
        Some(r) => (r.id.clone(), Some(r.kind.clone())),
        None => (format!("sid:{sid}"), None),
    };
    env.source = source;
    env.auth = Some(session.identity.clone());
    let verdict = if env.target == Target::Hub {
        policy::check_hub_event(&session.identity, &env.event)
    } else {
        policy::check_routed(
            &session.identity,
            sender_type.as_deref(),
            &env.event,
            &env.target,
        )
    };
    if let Err(err) = verdict {
        return reject(state, socket, Some(answer_id(&env)), err);
    }
    state.metrics.message(&env.event);
    let span = info_span!("envelope", event = %env.event, correlation_id = env.correlation_id.as_deref().unwrap_or(&env.id), source = %env.source, user = %session.identity.user);
    async {
        if env.target == Target::Hub {
            hub_event(
                state,
                socket,
                &session,
                sender_type.as_deref(),
                env.parsed(),
            )
            .await;
        } else {
            route(state, socket, env).await;
        }
    }
    .instrument(span)
    .await
}

/// The id a refusal of `env` answers: the whole message's for a part of a big message (its
/// sender waits for that one), else its own.
pub(super) fn answer_id<P>(env: &Envelope<P>) -> String {
    env.part
        .as_ref()
        .map_or_else(|| env.id.clone(), |p| p.of.clone())
}

fn check_sizes<P>(env: &Envelope<P>) -> Option<GzError> {
    let too_long = [("id", &env.id), ("event", &env.event)]
        .into_iter()
        .chain(env.correlation_id.as_ref().map(|c| ("correlation_id", c)))
        .find(|(_, v)| v.len() > MAX_NAME_LEN);
    if let Some((field, v)) = too_long {
        return Some(GzError::new(
            ErrorCode::InvalidPayload,
            format!(
                "field {field} is {} bytes long; the limit is {MAX_NAME_LEN}",
                v.len()
            ),
        ));
    }
    if env.event.is_empty() || env.id.is_empty() {
        return Some(GzError::new(
            ErrorCode::InvalidPayload,
            "id and event must not be empty",
        ));
    }
    None
}

/// Answers the sender with a `gz_error` envelope and counts the rejection.
fn reject(state: &HubState, socket: &SocketRef, correlation: Option<String>, err: GzError) {
    state.rejected.fetch_add(1, Ordering::Relaxed);
    state.metrics.rejected(&err.code);
    warn!(sid = %socket.id, code = %err.code, message = %err.message, "rejected message");
    let mut env = Envelope::new(
        Target::Component(format!("sid:{}", socket.id)),
        events::ERROR,
        serde_json::to_value(&err).unwrap_or(Value::Null),
    );
    env.source = state.config.hub_id.clone();
    env.auth = Some(Identity::hub(&state.config.hub_id));
    env.correlation_id = correlation;
    if let Err(e) = socket.emit(events::ERROR, &env) {
        debug!(error = %e, "could not deliver an error reply");
    }
}

fn send_to_socket<P: serde::Serialize>(state: &HubState, socket: &SocketRef, mut env: Envelope<P>) {
    if env.source.is_empty() {
        env.source = state.config.hub_id.clone();
    }
    if env.auth.is_none() {
        // Envelopes from sockets were stamped on intake: an unstamped one is the hub's own.
        env.auth = Some(Identity::hub(&state.config.hub_id));
    }
    if let Err(e) = socket.emit(env.event.clone(), &env) {
        warn!(sid = %socket.id, error = %e, "could not deliver a message to a socket");
    }
}

/// The payload of `shutdown` and `hub_shutting_down`.
fn reason(text: &str) -> Value {
    serde_json::to_value(Reason {
        reason: text.into(),
    })
    .unwrap_or(Value::Null)
}

fn reply_ok(state: &HubState, socket: &SocketRef, req: &Envelope, data: impl serde::Serialize) {
    let mut rep = req.reply_ok(data);
    rep.source = state.config.hub_id.clone();
    send_to_socket(state, socket, rep);
}

async fn hub_event(
    state: &Arc<HubState>,
    socket: &SocketRef,
    session: &Session,
    sender_type: Option<&str>,
    env: Envelope,
) {
    let sid = socket.id.to_string();
    let request = match HubRequest::decode(&env.event, &env.payload) {
        Ok(request) => request,
        // Identity events answer with a reply, as their handler's own errors do.
        Err(err) if AdminRequest::EVENTS.contains(&env.event.as_str()) => {
            return send_to_socket(state, socket, env.reply_err(err));
        }
        Err(err) => return reject(state, socket, Some(env.id.clone()), err),
    };
    match request {
        HubRequest::Register(mut reg) => {
            if let Err(err) = check_registration(state, session, &mut reg) {
                return reject(state, socket, Some(answer_id(&env)), err);
            }
            let replaced = state
                .registry()
                .register_by(reg.clone(), &sid, &session.identity.user);
            socket.extensions.insert(Arc::new(RegisteredAs {
                id: reg.component_id.clone(),
                kind: reg.component_type.clone(),
            }));
            if let Some(old) = replaced {
                if let Some(old_socket) = old
                    .sid
                    .parse()
                    .ok()
                    .and_then(|sid| state.io.get_socket(sid))
                {
                    let _ = old_socket.disconnect();
                }
            }
            info!(component = %reg.component_id, kind = %reg.component_type, capacity = reg.capacity, "component registered");
            let registered = RegisteredPayload {
                component_id: reg.component_id.clone(),
                heartbeat_interval_ms: state.config.heartbeat_interval.as_millis() as u64,
                hub_id: state.config.hub_id.clone(),
            };
            let mut rep = Envelope::new(
                Target::Component(reg.component_id.clone()),
                events::REGISTERED,
                serde_json::to_value(registered).unwrap_or(Value::Null),
            )
            .correlated(env.id.clone());
            rep.source = state.config.hub_id.clone();
            send_to_socket(state, socket, rep);
            if reg.component_type == component_types::QUEUE_MANAGER {
                // What it publishes depends on who watches: it learns all of it now, and
                // each change after (`watched.rs`).
                tell_watched(state);
                let all = state.registry().all_watched();
                send_to_socket(state, socket, rooms_watched(&all));
            }
            let info = state
                .registry()
                .list()
                .into_iter()
                .find(|c| c.registration.component_id == reg.component_id);
            share_components(state);
            if let Some(info) = info {
                broadcast(
                    state,
                    rooms::COMPONENTS,
                    events::COMPONENT_JOINED,
                    &info,
                    true,
                )
                .await;
            }
        }
        HubRequest::Heartbeat(mut hb) => {
            if let Some(m) = hb.metadata.as_mut() {
                if let Err(err) = check_metadata(m) {
                    return reject(state, socket, Some(answer_id(&env)), err);
                }
            }
            // An LLM provider's endpoints changing state (cooldown, down, back) is an alert.
            let before = hb
                .metadata
                .as_ref()
                .filter(|m| m.get("endpoints").is_some())
                .and_then(|_| state.registry().info_of_sid(&sid));
            let known = state.registry().heartbeat(&sid, &hb);
            reply_ok(state, socket, &env, HeartbeatReply { registered: known });
            if let (Some(info), Some(now)) = (before, hb.metadata.as_ref()) {
                crate::alerts::endpoints(state, &info, &info.registration.metadata, now).await;
            }
        }
        HubRequest::Deregister => {
            let removed = state.registry().remove_sid(&sid);
            socket.extensions.remove::<Arc<RegisteredAs>>();
            reply_ok(
                state,
                socket,
                &env,
                DeregisterReply {
                    removed: removed.is_some(),
                },
            );
            if let Some(entry) = removed {
                info!(component = %entry.info.registration.component_id, "component deregistered");
                announce_left(state, &entry.info, "deregistered").await;
            }
        }
        HubRequest::Subscribe(sub) | HubRequest::Unsubscribe(sub) => {
            if sub
                .rooms
                .iter()
                .any(|r| r.is_empty() || r.len() > MAX_NAME_LEN)
            {
                let err = GzError::new(
                    ErrorCode::InvalidPayload,
                    "room names must be 1..=256 bytes",
                );
                return reject(state, socket, Some(answer_id(&env)), err);
            }
            if env.event == events::SUBSCRIBE {
                if let Err(err) = check_rooms(state, session, sender_type, &sub.rooms).await {
                    return reject(state, socket, Some(answer_id(&env)), err);
                }
            }
            let changed = if env.event == events::SUBSCRIBE {
                socket.join(sub.rooms.clone());
                state.registry().join_rooms(&sid, &sub.rooms)
            } else {
                socket.leave(sub.rooms.clone());
                state.registry().leave_rooms(&sid, Some(&sub.rooms))
            };
            if changed {
                // Other hubs relay a room's events here only once they know it has members.
                share_components(state);
            }
            // Before the watcher hears back (and sends its catch-up request), the
            // queue-managers know whether to send its workflow's task events.
            tell_watched(state);
            let rooms = socket.rooms().into_iter().map(|r| r.to_string()).collect();
            reply_ok(state, socket, &env, RoomsReply { rooms });
        }
        HubRequest::ListComponents => {
            let list = state.registry().list();
            reply_ok(state, socket, &env, list);
        }
        HubRequest::HubStatus => {
            let status = crate::http::status(state);
            reply_ok(state, socket, &env, status);
        }
        HubRequest::Shutdown(request) => {
            // Anything but `{"scope": "all"}` stops the hub alone.
            let all = request.scope.as_deref() == Some("all");
            reply_ok(
                state,
                socket,
                &env,
                ShutdownReply {
                    stopping: true,
                    components: all,
                },
            );
            info!(by = %env.source, all, "shutdown requested");
            if all {
                let targets: Vec<String> = state
                    .registry()
                    .list()
                    .into_iter()
                    .map(|c| c.registration.component_id)
                    .collect();
                for id in targets {
                    let mut msg = Envelope::new(
                        Target::Component(id.clone()),
                        events::SHUTDOWN,
                        reason("shutdown requested"),
                    );
                    msg.source = state.config.hub_id.clone();
                    deliver_to_component(state, &id, msg);
                }
            }
            let stop = state.stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                stop.fire();
            });
        }
        HubRequest::Admin(request) => {
            let answer = crate::admin::handle(state, session, request).await;
            let rep = match answer {
                Ok(data) => env.reply_ok(data),
                Err(err) => env.reply_err(err),
            };
            send_to_socket(state, socket, rep);
        }
    }
}
