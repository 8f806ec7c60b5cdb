//! Socket.IO handlers: envelope intake, hub events, routing, disconnects and the reaper.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::events::{self, rooms};
use gleitzeit_protocol::payloads::{
    ComponentInfo, ComponentLeft, RegisterPayload, RegisteredPayload,
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
        return reject(state, socket, Some(env.id.clone()), err);
    }
    let Some(session) = session_of(socket) else {
        let err = GzError::new(ErrorCode::AuthInvalid, "this socket is not authenticated");
        return reject(state, socket, Some(env.id.clone()), err);
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
        return reject(state, socket, Some(env.id.clone()), err);
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
                return reject(state, socket, Some(env.id.clone()), err);
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
                    return reject(state, socket, Some(env.id.clone()), err);
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
                return reject(state, socket, Some(env.id.clone()), err);
            }
            if env.event == events::SUBSCRIBE {
                if let Err(err) = check_rooms(state, session, sender_type, &sub.rooms).await {
                    return reject(state, socket, Some(env.id.clone()), err);
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

/// The envelope with its payload as unparsed JSON text (what travels between hubs).
fn to_raw<P: serde::Serialize>(env: Envelope<P>) -> RawEnvelope {
    env.map_payload(|p| serde_json::value::to_raw_value(&p).ok())
}

/// Delivers to a socket of this hub, by socket id; false when there is none.
fn deliver_to_sid<P: serde::Serialize>(state: &HubState, sid: &str, env: Envelope<P>) -> bool {
    match sid.parse().ok().and_then(|sid| state.io.get_socket(sid)) {
        Some(s) => {
            send_to_socket(state, &s, env);
            true
        }
        None => false,
    }
}

/// Delivers to a component (or `sid:<socket>`) connected to this hub only.
fn deliver_local<P: serde::Serialize>(state: &HubState, id: &str, env: Envelope<P>) -> bool {
    let sid = match id.strip_prefix("sid:") {
        Some(raw) => Some(raw.to_string()),
        None => state.registry().sid_of(id).map(str::to_string),
    };
    sid.is_some_and(|sid| deliver_to_sid(state, &sid, env))
}

/// Delivers to a component wherever it is: on this hub, or through the hub it is on.
/// False when no hub of the mesh has it.
fn deliver_to_component<P: serde::Serialize>(state: &HubState, id: &str, env: Envelope<P>) -> bool {
    if let Some(raw) = id.strip_prefix("sid:") {
        if let Some(s) = raw.parse().ok().and_then(|sid| state.io.get_socket(sid)) {
            send_to_socket(state, &s, env);
            return true;
        }
        // An unregistered socket of another hub: only that hub knows it.
        return relay(state, None, id, env);
    }
    let loc = state.registry().locate(id);
    match loc {
        Some(loc) => deliver_at(state, id, loc, env),
        // An answer to another hub of the mesh (hubs are not in the component table).
        None if state.registry().peers().iter().any(|p| p == id) => relay(state, Some(id), id, env),
        None => false,
    }
}

/// Delivers to component `id` at a known location.
fn deliver_at<P: serde::Serialize>(
    state: &HubState,
    id: &str,
    loc: Location,
    env: Envelope<P>,
) -> bool {
    match loc {
        Location::Local(sid) => deliver_to_sid(state, &sid, env),
        Location::Remote(hub) => relay(state, Some(&hub), id, env),
    }
}

/// Hands an envelope to another hub (or every other hub); false without a mesh or peers.
fn relay<P: serde::Serialize>(
    state: &HubState,
    hub: Option<&str>,
    to: &str,
    env: Envelope<P>,
) -> bool {
    let reachable = hub.is_some() || state.registry().has_peers();
    match &state.mesh {
        Some(mesh) if reachable => {
            mesh.deliver(hub, to, to_raw(env));
            true
        }
        _ => false,
    }
}

/// Sends this hub's component table to the other hubs.
fn share_components(state: &HubState) {
    if let Some(mesh) = &state.mesh {
        let (local, rooms) = {
            let reg = state.registry();
            (reg.local_list(), reg.local_rooms())
        };
        mesh.snapshot(local, rooms);
    }
}

async fn route(state: &Arc<HubState>, socket: &SocketRef, env: RawEnvelope) {
    let is_answer = env.is_reply() || env.event == events::ERROR;
    if is_answer {
        if let Some(cid) = &env.correlation_id {
            state.registry().answered(cid);
        }
    }
    if matches!(&env.target, Target::Component(id) if *id == state.config.hub_id) {
        return answer_to_hub(state, env);
    }
    state.routed.fetch_add(1, Ordering::Relaxed);
    let delivered = match &env.target {
        Target::Hub => true,
        Target::Component(id) => {
            let id = id.clone();
            deliver_to_component(state, &id, env.clone())
        }
        Target::Type(t) => {
            let key = format!("type:{t}");
            let chosen = state
                .registry()
                .choose(&key, &env.id, |c| &c.component_type == t);
            chosen.is_some_and(|(id, loc)| deliver_at(state, &id, loc, env.clone()))
        }
        Target::Capability(cap) => {
            let key = format!("capability:{cap}");
            let chosen = state
                .registry()
                .choose(&key, &env.id, |c| c.capabilities.iter().any(|x| x == cap));
            chosen.is_some_and(|(id, loc)| deliver_at(state, &id, loc, env.clone()))
        }
        Target::Room(room) => {
            let rooms: Vec<String> = room
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect();
            emit_to_rooms(state, rooms, &env, true).await;
            true
        }
    };
    if !delivered && !is_answer {
        let err = GzError::new(
            ErrorCode::NoRoute,
            format!("no connected component for target {}", env.target),
        );
        reject(state, socket, Some(env.id.clone()), err);
    } else if !delivered {
        debug!(target = %env.target, "reply for a component that is gone");
    }
}

/// Emits to the members of `rooms` on this hub and, when `relayed`, on every other hub.
async fn emit_to_rooms<P: serde::Serialize + Clone>(
    state: &HubState,
    rooms: Vec<String>,
    env: &Envelope<P>,
    relayed: bool,
) {
    if relayed {
        if let Some(mesh) = &state.mesh {
            let hubs = state.registry().hubs_watching(&rooms);
            if !hubs.is_empty() {
                mesh.room(&hubs, rooms.clone(), to_raw(env.clone()));
            }
        }
    }
    if let Err(e) = state.io.to(rooms).emit(env.event.clone(), env).await {
        warn!(error = %e, "room broadcast failed");
    }
}

/// Emits a hub event to a room of the whole mesh (`relayed`) or of this hub only.
pub(crate) async fn broadcast<T: serde::Serialize>(
    state: &HubState,
    room: &str,
    event: &str,
    payload: &T,
    relayed: bool,
) {
    let mut env = Envelope::new(
        Target::Room(room.to_string()),
        event,
        serde_json::to_value(payload).unwrap_or(Value::Null),
    );
    env.source = state.config.hub_id.clone();
    env.auth = Some(Identity::hub(&state.config.hub_id));
    emit_to_rooms(state, vec![room.to_string()], &env, relayed).await;
}

/// Announces that a component of this hub left, to the whole mesh.
async fn announce_left(state: &HubState, info: &ComponentInfo, reason: &str) {
    share_components(state);
    announce_left_to(state, info, reason, true).await;
    crate::alerts::component_left(state, info, reason).await;
}

async fn announce_left_to(state: &HubState, info: &ComponentInfo, reason: &str, relayed: bool) {
    let left = ComponentLeft {
        component_id: info.registration.component_id.clone(),
        component_type: info.registration.component_type.clone(),
        reason: reason.to_string(),
    };
    broadcast(
        state,
        rooms::COMPONENTS,
        events::COMPONENT_LEFT,
        &left,
        relayed,
    )
    .await;
}

/// Handles messages from other hubs of the mesh.
pub(crate) async fn mesh_intake(
    state: Arc<HubState>,
    mut rx: tokio::sync::mpsc::Receiver<MeshMessage>,
) {
    while let Some(msg) = rx.recv().await {
        match msg.kind {
            Kind::Snapshot => {
                let new = !state.registry().peers().contains(&msg.hub);
                state
                    .registry()
                    .update_remote(&msg.hub, msg.components, msg.rooms);
                if new {
                    info!(peer = %msg.hub, "hub joined the mesh");
                    // Let the newcomer learn this hub's components without waiting a tick.
                    share_components(&state);
                }
            }
            Kind::Deliver => {
                let (Some(to), Some(env)) = (msg.to, msg.env) else {
                    continue;
                };
                let is_answer = env.is_reply() || env.event == events::ERROR;
                if is_answer {
                    if let Some(cid) = &env.correlation_id {
                        state.registry().answered(cid);
                    }
                }
                if to == state.config.hub_id {
                    answer_to_hub(&state, env);
                    continue;
                }
                let (source, id) = (env.source.clone(), env.id.clone());
                let target = env.target.to_string();
                if !deliver_local(&state, &to, env) && !is_answer && !to.starts_with("sid:") {
                    // Gone from this hub since the sender's hub chose it: tell the sender.
                    let err = GzError::new(
                        ErrorCode::NoRoute,
                        format!("no connected component for target {target}"),
                    );
                    let mut rep = Envelope::new(
                        Target::Component(source.clone()),
                        events::ERROR,
                        serde_json::to_value(&err).unwrap_or(Value::Null),
                    )
                    .correlated(id);
                    rep.source = state.config.hub_id.clone();
                    deliver_to_component(&state, &source, rep);
                }
            }
            Kind::Room => {
                if let Some(env) = msg.env {
                    emit_to_rooms(&state, msg.rooms, &env, false).await;
                }
            }
            Kind::Bye => {
                let gone = state.registry().drop_remote(&msg.hub);
                info!(peer = %msg.hub, components = gone.len(), "hub left the mesh");
                for c in gone {
                    announce_left_to(&state, &c, "hub_left", false).await;
                }
            }
        }
    }
}

/// Shares this hub's component table every interval and forgets hubs gone silent.
pub(crate) async fn mesh_ticker(state: Arc<HubState>, stopped: Shutdown) {
    let every = state.config.heartbeat_interval.min(Duration::from_secs(1));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait() => return,
        }
        share_components(&state);
        let silent = state.registry().silent_hubs(state.config.heartbeat_timeout);
        for hub in silent {
            let gone = state.registry().drop_remote(&hub);
            warn!(peer = %hub, components = gone.len(), "no word from a hub within the heartbeat timeout; its components are gone");
            for c in gone {
                announce_left_to(&state, &c, "hub_lost", false).await;
            }
        }
    }
}

/// Marks components with late heartbeats unhealthy and removes silent ones.
pub(crate) async fn reaper(state: Arc<HubState>, stopped: Shutdown) {
    let interval = state.config.heartbeat_interval;
    let timeout = state.config.heartbeat_timeout;
    let mut tick = tokio::time::interval((interval / 2).max(Duration::from_millis(25)));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait() => return,
        }
        let verdicts = state.registry().reap(interval * 2, timeout);
        for v in verdicts {
            match v {
                Verdict::Unhealthy(info) => {
                    warn!(component = %info.registration.component_id, "heartbeats late; marked unhealthy");
                    broadcast(
                        &state,
                        rooms::COMPONENTS,
                        events::COMPONENT_UNHEALTHY,
                        &info,
                        true,
                    )
                    .await;
                    crate::alerts::component_unhealthy(&state, &info).await;
                }
                Verdict::Expired(entry) => {
                    warn!(component = %entry.info.registration.component_id, "no heartbeat within the timeout; removed");
                    if let Some(s) = entry
                        .sid
                        .parse()
                        .ok()
                        .and_then(|sid| state.io.get_socket(sid))
                    {
                        let _ = s.disconnect();
                    }
                    announce_left(&state, &entry.info, "heartbeat_timeout").await;
                }
            }
        }
    }
}

/// Tells every socket the hub is going away, then closes them.
pub(crate) async fn announce_shutdown(state: &HubState) {
    info!("telling connected sockets the hub is shutting down");
    let mut env = Envelope::new(
        Target::Room("*".into()),
        events::HUB_SHUTTING_DOWN,
        reason("hub shutting down"),
    );
    env.source = state.config.hub_id.clone();
    env.auth = Some(Identity::hub(&state.config.hub_id));
    if let Err(e) = state.io.emit(events::HUB_SHUTTING_DOWN, &env).await {
        debug!(error = %e, "shutdown broadcast failed");
    }
    if let Some(mesh) = &state.mesh {
        mesh.leave().await;
    }
    state.io.close().await;
}

/// Checks a registration against the key's grant and the limits, and redacts its metadata.
fn check_registration(
    state: &HubState,
    session: &Session,
    reg: &mut RegisterPayload,
) -> Result<(), GzError> {
    if reg.component_id.is_empty()
        || reg.component_type.is_empty()
        || reg.component_id.len() > MAX_NAME_LEN
        || reg.component_type.len() > MAX_NAME_LEN
        || reg.component_id.starts_with("sid:")
    {
        return Err(GzError::new(
            ErrorCode::InvalidPayload,
            "component_id and component_type must be non-empty and at most 256 bytes \
             (and an id may not start with \"sid:\")",
        ));
    }
    if !session.grant.may_register_as(&reg.component_type) {
        return Err(GzError::new(
            ErrorCode::PermissionDenied,
            format!(
                "{} ({}) may not register as a {}",
                session.identity.user, session.identity.role, reg.component_type
            ),
        )
        .with_hint(
            "use a SERVICE key that allows this component type \
             (`gz auth key create NAME --user U --component-types TYPE`)",
        ));
    }
    if reg.component_id == state.config.hub_id
        || state.registry().peers().contains(&reg.component_id)
    {
        return Err(GzError::new(
            ErrorCode::PermissionDenied,
            "a component may not take a hub's id",
        ));
    }
    let owner = state
        .registry()
        .owner_of(&reg.component_id)
        .map(str::to_string);
    if let Some(owner) = owner {
        if owner != session.identity.user
            && session.identity.role != gleitzeit_protocol::Role::Admin
        {
            return Err(GzError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "component id {:?} is registered by another user",
                    reg.component_id
                ),
            ));
        }
    }
    if reg.capabilities.len() > MAX_CAPABILITIES
        || reg
            .capabilities
            .iter()
            .any(|c| c.is_empty() || c.len() > MAX_NAME_LEN)
    {
        return Err(GzError::new(
            ErrorCode::TooLarge,
            format!(
                "{} capabilities declared; at most {MAX_CAPABILITIES} of 1..=256 bytes each",
                reg.capabilities.len()
            ),
        ));
    }
    check_metadata(&mut reg.metadata)
}

/// Limits metadata to [`MAX_METADATA_BYTES`] and redacts credentials in it, so the registry,
/// `/components`, `/providers`, events and the mesh never carry a password.
fn check_metadata(metadata: &mut Value) -> Result<(), GzError> {
    let size = serde_json::to_string(metadata)
        .map(|s| s.len())
        .unwrap_or(0);
    if size > MAX_METADATA_BYTES {
        return Err(GzError::new(
            ErrorCode::TooLarge,
            format!("metadata is {size} bytes; the limit is {MAX_METADATA_BYTES}"),
        ));
    }
    gleitzeit_protocol::identity::redact_json(metadata);
    Ok(())
}

/// Checks that the session may join every room asked for (asking the queue-manager who
/// owns a workflow when a USER asks for its room).
async fn check_rooms(
    state: &Arc<HubState>,
    session: &Session,
    sender_type: Option<&str>,
    rooms: &[String],
) -> Result<(), GzError> {
    for room in rooms {
        match policy::room_access(&session.identity, sender_type, room) {
            RoomAccess::Allowed => {}
            RoomAccess::Denied(err) => return Err(err),
            RoomAccess::IfOwner(workflow_id) => {
                let owner = workflow_owner(state, &workflow_id).await?;
                if owner.as_deref() != Some(session.identity.user.as_str()) {
                    return Err(GzError::new(
                        ErrorCode::PermissionDenied,
                        format!(
                            "{} may not watch workflow {workflow_id}: it is not theirs",
                            session.identity.user
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Who owns a workflow, from the cache or a queue-manager.
async fn workflow_owner(
    state: &Arc<HubState>,
    workflow_id: &str,
) -> Result<Option<String>, GzError> {
    let cached = lock(&state.owners).get(workflow_id).cloned();
    if let Some(owner) = cached {
        return Ok(owner);
    }
    let answer = ask(
        state,
        Target::Type(gleitzeit_protocol::events::component_types::QUEUE_MANAGER.into()),
        events::WORKFLOW_OWNER,
        json!({ "workflow_id": workflow_id }),
        OWNER_TIMEOUT,
    )
    .await?;
    let owner = answer
        .get("owner")
        .and_then(Value::as_str)
        .map(str::to_string);
    if owner.is_some() {
        let mut owners = lock(&state.owners);
        if owners.len() >= MAX_CACHED_OWNERS {
            owners.clear();
        }
        owners.insert(workflow_id.to_string(), owner.clone());
    }
    Ok(owner)
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends a request of the hub's own and waits up to `timeout` for its reply: to one healthy
/// component of a type (anywhere in the mesh), or to a component of this hub by id.
pub(crate) async fn ask(
    state: &Arc<HubState>,
    target: Target,
    event: &str,
    payload: Value,
    timeout: Duration,
) -> Result<Value, GzError> {
    let mut env = Envelope::new(target.clone(), event, payload);
    env.source = state.config.hub_id.clone();
    env.auth = Some(Identity::hub(&state.config.hub_id));
    let (tx, rx) = tokio::sync::oneshot::channel();
    lock(&state.pending).insert(env.id.clone(), tx);
    let id = env.id.clone();
    // However this ends (an answer, the timeout, or the caller giving up, as an HTTP scrape
    // whose client went away does), nobody waits for this id any more.
    let _waiting = Waiting { state, id: &id };
    let sent = match &target {
        Target::Type(t) => {
            let chosen = state
                .registry()
                .choose(&format!("type:{t}"), &id, |c| &c.component_type == t);
            chosen.is_some_and(|(cid, loc)| deliver_at(state, &cid, loc, env))
        }
        Target::Component(cid) => deliver_local(state, cid, env),
        _ => false,
    };
    if !sent {
        return Err(GzError::new(
            ErrorCode::NoRoute,
            format!("no connected component for target {target}"),
        ));
    }
    let reply = match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(reply)) => reply,
        _ => {
            return Err(GzError::new(
                ErrorCode::RequestTimeout,
                format!("no answer to {event} from {target}"),
            ))
        }
    };
    if reply.event == events::ERROR {
        return Err(reply.payload_as::<GzError>().unwrap_or_else(|e| e));
    }
    reply.payload_as::<Reply>()?.into_result()
}

/// A request of the hub's own in [`HubState::pending`], removed when dropped.
struct Waiting<'a> {
    state: &'a HubState,
    id: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.state.pending).remove(self.id);
    }
}

/// A reply addressed to the hub itself: hands it to the waiting request.
fn answer_to_hub(state: &HubState, env: RawEnvelope) {
    let Some(cid) = env.correlation_id.clone() else {
        return;
    };
    let waiter = lock(&state.pending).remove(&cid);
    match waiter {
        Some(tx) => {
            let _ = tx.send(env.parsed());
        }
        None => debug!(correlation_id = %cid, "an answer to the hub that nobody waits for"),
    }
}

/// Closes this hub's sockets that use the key `key_id`; returns how many.
pub(crate) fn disconnect_key(state: &HubState, key_id: &str) -> usize {
    let mut closed = 0;
    for socket in state.io.sockets() {
        let uses_key =
            session_of(&socket).is_some_and(|s| s.identity.key_id.as_deref() == Some(key_id));
        if uses_key {
            let _ = socket.disconnect();
            closed += 1;
        }
    }
    closed
}

/// Checks connected sockets' keys every [`crate::auth::REVALIDATE_EVERY`]: sockets whose key
/// was revoked or expired (on any hub of a mesh) are closed.
pub(crate) async fn revalidator(state: Arc<HubState>, stopped: Shutdown) {
    let mut tick = tokio::time::interval(crate::auth::REVALIDATE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.wait() => return,
        }
        let mut verdicts: std::collections::HashMap<String, bool> = Default::default();
        for socket in state.io.sockets() {
            let Some(session) = session_of(&socket) else {
                continue;
            };
            let Some(key_id) = session.identity.key_id.clone() else {
                continue;
            };
            let valid = match verdicts.get(&key_id) {
                Some(v) => *v,
                None => {
                    let v = state.auth.still_valid(&session).await;
                    verdicts.insert(key_id.clone(), v);
                    v
                }
            };
            if !valid {
                warn!(sid = %socket.id, key = %key_id, user = %session.identity.user, "key revoked or expired; closing its connection");
                let _ = socket.disconnect();
            }
        }
    }
}
