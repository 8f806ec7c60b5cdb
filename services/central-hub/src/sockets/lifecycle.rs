//! Background duties: the reaper of silent components, key revalidation, disconnecting a
//! revoked key's sockets, and the goodbye at shutdown.

use super::*;

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
