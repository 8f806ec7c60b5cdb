//! The mesh side of the sockets: what peer hubs send, and the periodic share of this hub's
//! components.

use super::*;

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
                tell_watched(&state);
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
                tell_watched(&state);
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
            tell_watched(&state);
            warn!(peer = %hub, components = gone.len(), "no word from a hub within the heartbeat timeout; its components are gone");
            for c in gone {
                announce_left_to(&state, &c, "hub_lost", false).await;
            }
        }
    }
}
