//! Identity events the hub answers itself: `auth_whoami` (anyone) and user and key
//! management (ADMIN only, checked by [`crate::policy`] before this runs). The key store is
//! the hub's (the data dir's `auth.db`, or the mesh's Redis); a new key's secret is in the
//! reply once and never logged.

use std::sync::Arc;

use gleitzeit_protocol::accounts::{KeyCreated, ListedKey, WhoAmI};
use gleitzeit_protocol::requests::AdminRequest;
use gleitzeit_protocol::{to_payload, ErrorCode, GzError, Role};
use serde_json::Value;
use tracing::info;

use crate::auth::Session;
use crate::HubState;

/// Answers one identity event.
pub(crate) async fn handle(
    state: &Arc<HubState>,
    session: &Session,
    request: AdminRequest,
) -> Result<Value, GzError> {
    let auth = &state.auth;
    match request {
        AdminRequest::WhoAmI => to_payload(&WhoAmI {
            user: session.identity.user.clone(),
            role: session.identity.role,
            key_id: session.identity.key_id.clone(),
            expires_at: session.grant.expires_at,
            component_types: session.grant.component_types.clone(),
            auth: if auth.store().is_some() {
                "required"
            } else {
                "off"
            }
            .into(),
        }),
        AdminRequest::UserCreate(req) => {
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
            to_payload(&user)
        }
        AdminRequest::UserList => to_payload(&auth.blocking((), |s, ()| s.users()).await?),
        AdminRequest::KeyCreate(req) => {
            let new = auth
                .blocking(req, |s, r| {
                    s.create_key(&r.name, &r.user, r.expires_days, r.component_types)
                })
                .await?;
            info!(by = %session.identity.user, key = %new.info.id, user = %new.info.user, "key created");
            to_payload(&KeyCreated {
                key: new.info,
                api_key: new.secret,
            })
        }
        AdminRequest::KeyList => {
            let keys = auth.blocking((), |s, ()| s.keys()).await?;
            let now = gleitzeit_auth::now_millis();
            let listed: Vec<ListedKey> = keys
                .into_iter()
                .map(|key| ListedKey {
                    state: key.state(now).into(),
                    key,
                })
                .collect();
            to_payload(&listed)
        }
        AdminRequest::KeyRevoke(req) => {
            let key = auth.blocking(req, |s, r| s.revoke_key(&r.id)).await?;
            auth.forget_key(&key.id);
            let closed = crate::sockets::disconnect_key(state, &key.id);
            info!(by = %session.identity.user, key = %key.id, sockets_closed = closed, "key revoked");
            to_payload(&key)
        }
    }
}
