//! The hub asking a component and waiting for its answer (correlated replies).

use super::*;

pub(super) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
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
pub(super) struct Waiting<'a> {
    state: &'a HubState,
    id: &'a str,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.state.pending).remove(self.id);
    }
}

/// A reply addressed to the hub itself: hands it to the waiting request.
pub(super) fn answer_to_hub(state: &HubState, env: RawEnvelope) {
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
