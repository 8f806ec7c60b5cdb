//! Where envelopes go: to a socket, a component here or on a peer hub, rooms, everyone;
//! and the news that a component left.

use super::*;

/// The envelope with its payload as unparsed JSON text (what travels between hubs).
pub(super) fn to_raw<P: serde::Serialize>(env: Envelope<P>) -> RawEnvelope {
    env.map_payload(|p| serde_json::value::to_raw_value(&p).ok())
}

/// Delivers to a socket of this hub, by socket id; false when there is none.
pub(super) fn deliver_to_sid<P: serde::Serialize>(
    state: &HubState,
    sid: &str,
    env: Envelope<P>,
) -> bool {
    match sid.parse().ok().and_then(|sid| state.io.get_socket(sid)) {
        Some(s) => {
            send_to_socket(state, &s, env);
            true
        }
        None => false,
    }
}

/// Delivers to a component (or `sid:<socket>`) connected to this hub only.
pub(super) fn deliver_local<P: serde::Serialize>(
    state: &HubState,
    id: &str,
    env: Envelope<P>,
) -> bool {
    let sid = match id.strip_prefix("sid:") {
        Some(raw) => Some(raw.to_string()),
        None => state.registry().sid_of(id).map(str::to_string),
    };
    sid.is_some_and(|sid| deliver_to_sid(state, &sid, env))
}

/// Delivers to a component wherever it is: on this hub, or through the hub it is on.
/// False when no hub of the mesh has it.
pub(super) fn deliver_to_component<P: serde::Serialize>(
    state: &HubState,
    id: &str,
    env: Envelope<P>,
) -> bool {
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
pub(super) fn deliver_at<P: serde::Serialize>(
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
pub(super) fn relay<P: serde::Serialize>(
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

/// Tells this hub's queue-managers which event rooms gained their first watcher or lost
/// their last one in the mesh since the last call (`watched.rs`). Called after every change
/// of rooms, before the socket that changed them hears back.
pub(super) fn tell_watched(state: &HubState) {
    let (changes, queue_managers) = {
        let mut reg = state.registry();
        match reg.watch_changes() {
            Some(changes) => (changes, reg.local_queue_managers()),
            None => return,
        }
    };
    for sid in queue_managers {
        deliver_to_sid(state, &sid, rooms_watched(&changes));
    }
}

/// A `rooms_watched` envelope for this hub's queue-managers.
pub(super) fn rooms_watched(payload: &RoomsWatched) -> Envelope {
    Envelope::new(
        Target::Type(component_types::QUEUE_MANAGER.to_string()),
        events::ROOMS_WATCHED,
        serde_json::to_value(payload).unwrap_or(Value::Null),
    )
}

/// Sends this hub's component table to the other hubs.
pub(super) fn share_components(state: &HubState) {
    if let Some(mesh) = &state.mesh {
        let (local, rooms) = {
            let reg = state.registry();
            (reg.local_list(), reg.local_rooms())
        };
        mesh.snapshot(local, rooms);
    }
}

pub(super) async fn route(state: &Arc<HubState>, socket: &SocketRef, env: RawEnvelope) {
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
    // The envelope moves to its receiver (no copy of a payload of megabytes); what the
    // answer to an undeliverable one needs is kept apart.
    let (id, target) = (answer_id(&env), env.target.clone());
    let delivered = match &target {
        Target::Hub => true,
        Target::Component(to) => deliver_to_component(state, to, env),
        Target::Type(t) => {
            let key = format!("type:{t}");
            let pred = |c: &RegisterPayload| &c.component_type == t;
            let chosen = match &env.part {
                // Every part of a big message goes to the same instance.
                Some(part) => state.registry().choose_for_part(part, pred),
                None => state.registry().choose(&key, &id, pred),
            };
            chosen.is_some_and(|(to, loc)| deliver_at(state, &to, loc, env))
        }
        Target::Capability(cap) => {
            let key = format!("capability:{cap}");
            let pred = |c: &RegisterPayload| c.capabilities.iter().any(|x| x == cap);
            let chosen = match &env.part {
                Some(part) => state.registry().choose_for_part(part, pred),
                None => state.registry().choose(&key, &id, pred),
            };
            chosen.is_some_and(|(to, loc)| deliver_at(state, &to, loc, env))
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
            format!("no connected component for target {target}"),
        );
        reject(state, socket, Some(id), err);
    } else if !delivered {
        debug!(%target, "reply for a component that is gone");
    }
}

/// Emits to the members of `rooms` on this hub and, when `relayed`, on every other hub.
pub(super) async fn emit_to_rooms<P: serde::Serialize + Clone>(
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
pub(super) async fn announce_left(state: &HubState, info: &ComponentInfo, reason: &str) {
    share_components(state);
    announce_left_to(state, info, reason, true).await;
    crate::alerts::component_left(state, info, reason).await;
}

pub(super) async fn announce_left_to(
    state: &HubState,
    info: &ComponentInfo,
    reason: &str,
    relayed: bool,
) {
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
