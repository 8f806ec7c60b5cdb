//! Authentication at the hub: who a connection is.
//!
//! A Socket.IO client presents its API key in the connect `auth` payload
//! (`{"api_key": "gzt_…"}`) or in an `Authorization: Bearer` header of the handshake; an
//! HTTP client in `Authorization: Bearer`. [`Authenticator::authenticate`] checks the key
//! against the key store (on a blocking thread) and yields the [`Session`] the socket keeps
//! for its life: every envelope it sends is stamped with that identity. With authentication
//! off (`--auth off`, loopback only) every connection is the anonymous admin.
//!
//! Keys are checked again every [`REVALIDATE_EVERY`]: a revoked or expired key loses its
//! sockets within that time (at once on the hub that revoked it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gleitzeit_auth::{AuthError, Grant, KeyStore};
use gleitzeit_protocol::{ErrorCode, GzError, Identity, Role};
use serde_json::Value;

/// How often connected sockets' keys are checked again.
pub const REVALIDATE_EVERY: Duration = Duration::from_secs(10);

/// Whether connections must present a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Every connection and HTTP request needs a valid key (the default).
    #[default]
    Required,
    /// No keys: everyone is the anonymous admin. Refused beyond loopback unless the
    /// operator spells out `--insecure-no-auth`.
    Off,
}

impl std::str::FromStr for AuthMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "required" | "on" | "true" => Ok(AuthMode::Required),
            "off" | "none" | "disabled" | "false" => Ok(AuthMode::Off),
            other => Err(format!("unknown auth mode {other:?}: use required or off")),
        }
    }
}

/// What a connection is allowed, for its whole life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Who it is (stamped on every envelope it sends).
    pub identity: Identity,
    /// The component types its key may register as.
    pub grant: Grant,
}

impl Session {
    fn anonymous_admin() -> Session {
        let identity = Identity {
            user: "anonymous".into(),
            role: Role::Admin,
            key_id: None,
        };
        Session {
            grant: Grant {
                identity: identity.clone(),
                component_types: Vec::new(),
                expires_at: None,
            },
            identity,
        }
    }
}

/// How long a store outage may last before remembered keys stop being honoured.
const OUTAGE_GRACE: Duration = Duration::from_secs(3600);
/// Keys remembered at most.
const MAX_REMEMBERED: usize = 10_000;

/// Checks keys. Keys verified within [`REVALIDATE_EVERY`] are taken from memory (so the
/// HTTP pages and reconnects cost no store call), and while the store cannot be reached
/// (a mesh Redis restarting) keys verified before the outage keep working for
/// [`OUTAGE_GRACE`]: the hub keeps routing its own components.
pub struct Authenticator {
    mode: AuthMode,
    store: Option<Arc<KeyStore>>,
    /// By key hash: the grant and when it was verified.
    verified: std::sync::Mutex<HashMap<String, (Grant, Instant)>>,
}

impl Authenticator {
    /// An authenticator in `mode` over `store` (needed when keys are required).
    pub fn new(mode: AuthMode, store: Option<Arc<KeyStore>>) -> Authenticator {
        Authenticator {
            mode,
            store,
            verified: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn remembered(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Grant, Instant)>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets a key (after it was revoked here).
    pub fn forget_key(&self, key_id: &str) {
        self.remembered()
            .retain(|_, (g, _)| g.identity.key_id.as_deref() != Some(key_id));
    }

    /// Verifies a key, from memory when recently verified or while the store is down.
    async fn verify(&self, key: &str) -> Result<Grant, GzError> {
        let hash = gleitzeit_auth::hash_key(key);
        let known = self.remembered().get(&hash).cloned();
        let now_ms = gleitzeit_auth::now_millis();
        if let Some((grant, at)) = &known {
            if at.elapsed() < REVALIDATE_EVERY && grant.expires_at.is_none_or(|e| e > now_ms) {
                return Ok(grant.clone());
            }
        }
        match self.blocking(key.to_string(), |s, k| s.verify(&k)).await {
            Ok(grant) => {
                let mut map = self.remembered();
                if map.len() >= MAX_REMEMBERED {
                    map.clear();
                }
                map.insert(hash, (grant.clone(), Instant::now()));
                Ok(grant)
            }
            Err(e) if e.is(ErrorCode::StoreFailed) => match known {
                Some((grant, at)) if at.elapsed() < OUTAGE_GRACE => {
                    tracing::warn!(error = %e, "key store unreachable; honouring a key verified before");
                    Ok(grant)
                }
                _ => Err(e),
            },
            Err(e) => {
                self.remembered().remove(&hash);
                Err(e)
            }
        }
    }

    /// The mode in force.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The key store, if there is one.
    pub fn store(&self) -> Option<&Arc<KeyStore>> {
        self.store.as_ref()
    }

    /// The session of a connection presenting `key` (or none).
    pub async fn authenticate(&self, key: Option<&str>) -> Result<Arc<Session>, GzError> {
        if self.mode == AuthMode::Off {
            return Ok(Arc::new(Session::anonymous_admin()));
        }
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(GzError::new(
                ErrorCode::AuthInvalid,
                "authentication required: no API key presented",
            ));
        };
        let grant = self.verify(key).await?;
        Ok(Arc::new(Session {
            identity: grant.identity.clone(),
            grant,
        }))
    }

    /// Runs a key-store call on a blocking thread.
    pub async fn blocking<T: Send + 'static, A: Send + 'static>(
        &self,
        arg: A,
        f: impl FnOnce(&KeyStore, A) -> Result<T, AuthError> + Send + 'static,
    ) -> Result<T, GzError> {
        let Some(store) = self.store.clone() else {
            return Err(GzError::new(
                ErrorCode::AuthInvalid,
                "this hub has no key store (authentication is off)",
            ));
        };
        tokio::task::spawn_blocking(move || f(&store, arg))
            .await
            .map_err(|e| GzError::new(ErrorCode::Internal, format!("key store task: {e}")))?
            .map_err(GzError::from)
    }

    /// Whether the key behind `session` is still valid (not revoked or expired, user still
    /// there). Sessions without a key (authentication off) always are.
    pub async fn still_valid(&self, session: &Session) -> bool {
        let Some(key_id) = session.identity.key_id.clone() else {
            return true;
        };
        let now = gleitzeit_auth::now_millis();
        if session.grant.expires_at.is_some_and(|e| e <= now) {
            return false;
        }
        match self
            .blocking(key_id.clone(), |s, id| s.key_valid(&id))
            .await
        {
            Ok(true) => true,
            Ok(false) => {
                self.forget_key(&key_id);
                false
            }
            // A store outage must not disconnect everyone: keep the session.
            Err(e) => {
                tracing::warn!(error = %e, "cannot revalidate a key; keeping the session");
                true
            }
        }
    }
}

/// The key presented in a connect `auth` payload (`{"api_key": …}`; `token` is accepted
/// for clients of the original).
pub fn key_from_auth_payload(auth: &Value) -> Option<&str> {
    auth.get("api_key")
        .or_else(|| auth.get("token"))
        .and_then(Value::as_str)
}

/// The key of an `Authorization: Bearer KEY` header.
pub fn key_from_headers(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// How a refused connection is described to the client (`connect_error` message): the
/// code first, so clients can tell a bad key from an expired one.
pub fn refusal_text(err: &GzError) -> String {
    match &err.hint {
        Some(h) => format!("{}: {} (hint: {h})", err.code, err.message),
        None => format!("{}: {}", err.code, err.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_auth_payload_or_the_bearer_header() {
        let v = serde_json::json!({"api_key": "gzt_x"});
        assert_eq!(key_from_auth_payload(&v), Some("gzt_x"));
        assert_eq!(key_from_auth_payload(&serde_json::json!("x")), None);
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            axum::http::HeaderValue::from_static("Bearer gzt_y"),
        );
        assert_eq!(key_from_headers(&h), Some("gzt_y"));
    }

    #[tokio::test]
    async fn without_a_key_required_auth_refuses_and_off_is_the_anonymous_admin() {
        let required = Authenticator::new(AuthMode::Required, None);
        let err = required.authenticate(None).await.err();
        assert_eq!(err.map(|e| e.code), Some("GZ4001".to_string()));
        let off = Authenticator::new(AuthMode::Off, None);
        let s = off.authenticate(None).await.ok();
        assert_eq!(s.map(|s| s.identity.role), Some(Role::Admin));
    }
}
