//! Identity events the hub answers itself: `auth_whoami` (anyone) and user and key
//! management (ADMIN only, checked by [`crate::policy`] before this runs). The key store is
//! the hub's (the data dir's `auth.db`, or the mesh's Redis); a new key's secret is in the
//! reply once and never logged.

use std::sync::Arc;

use gleitzeit_protocol::{events, Envelope, ErrorCode, GzError, Role};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use crate::auth::Session;
use crate::HubState;

#[derive(Deserialize)]
struct UserCreate {
    name: String,
    role: String,
}

#[derive(Deserialize)]
struct KeyCreate {
    name: String,
    user: String,
    #[serde(default)]
    expires_days: Option<u32>,
    #[serde(default)]
    component_types: Vec<String>,
}

#[derive(Deserialize)]
struct KeyRevoke {
    id: String,
}

/// Answers one identity event.
pub(crate) async fn handle(
    state: &Arc<HubState>,
    session: &Session,
    env: &Envelope,
) -> Result<Value, GzError> {
    let auth = &state.auth;
    match env.event.as_str() {
        events::AUTH_WHOAMI => Ok(json!({
            "user": session.identity.user,
            "role": session.identity.role,
            "key_id": session.identity.key_id,
            "expires_at": session.grant.expires_at,
            "component_types": session.grant.component_types,
            "auth": if auth.store().is_some() { "required" } else { "off" },
        })),
        events::AUTH_USER_CREATE => {
            let req: UserCreate = env.payload_as()?;
            let role: Role =
                req.role
                    .parse()
                    .map_err(|e: gleitzeit_protocol::identity::UnknownRole| {
                        GzError::new(ErrorCode::InvalidField, e.to_string())
                    })?;
            let user = auth
                .blocking(req, move |s, r| s.create_user(&r.name, role))
                .await?;
            info!(by = %session.identity.user, user = %user.name, role = %user.role, "user created");
            to_json(&user)
        }
        events::AUTH_USER_LIST => to_json(&auth.blocking((), |s, ()| s.users()).await?),
        events::AUTH_KEY_CREATE => {
            let req: KeyCreate = env.payload_as()?;
            let new = auth
                .blocking(req, |s, r| {
                    s.create_key(&r.name, &r.user, r.expires_days, r.component_types)
                })
                .await?;
            info!(by = %session.identity.user, key = %new.info.id, user = %new.info.user, "key created");
            Ok(json!({ "key": new.info, "api_key": new.secret }))
        }
        events::AUTH_KEY_LIST => {
            let keys = auth.blocking((), |s, ()| s.keys()).await?;
            let now = gleitzeit_auth::now_millis();
            let listed: Vec<Value> = keys
                .into_iter()
                .map(|k| {
                    let state = k.state(now);
                    let mut v = serde_json::to_value(&k).unwrap_or(Value::Null);
                    v["state"] = json!(state);
                    v
                })
                .collect();
            Ok(Value::Array(listed))
        }
        events::AUTH_KEY_REVOKE => {
            let req: KeyRevoke = env.payload_as()?;
            let key = auth.blocking(req, |s, r| s.revoke_key(&r.id)).await?;
            auth.forget_key(&key.id);
            let closed = crate::sockets::disconnect_key(state, &key.id);
            info!(by = %session.identity.user, key = %key.id, sockets_closed = closed, "key revoked");
            to_json(&key)
        }
        other => Err(GzError::new(
            ErrorCode::UnknownEvent,
            format!("not an identity event: {other:?}"),
        )),
    }
}

fn to_json(v: &impl serde::Serialize) -> Result<Value, GzError> {
    serde_json::to_value(v).map_err(|e| GzError::new(ErrorCode::Internal, e.to_string()))
}
