//! Gleitzeit identity: users with roles, and the API keys they authenticate with.
//!
//! A key looks like `gzt_<id>_<secret>`: the 12-hex-digit id is public (it names the key in
//! `gz auth key list` and `gz auth key revoke`), the 64-hex-digit secret is shown once, when
//! the key is made, and never stored: the store keeps only the SHA-256 of the whole key, and
//! [`KeyStore::verify`] compares hashes in constant time. Keys can expire and be revoked.
//!
//! The store ([`KeyStore`]) is an SQLite file in the data dir (`auth.db`: what `gz auth
//! init` writes before any hub runs) or, for a hub mesh, the mesh's Redis, so every hub of
//! the mesh sees the same keys. Calls are blocking: async callers run them on a blocking
//! thread.

#![forbid(unsafe_code)]

mod key;
mod redis_store;
mod sqlite_store;

pub use key::{hash_key, parse_key, KEY_PREFIX};

use std::path::Path;

use gleitzeit_protocol::{ErrorCode, GzError, Identity, Role};

pub use gleitzeit_protocol::accounts::{KeyInfo, User};

/// A key just made: its record and the secret key string, to be shown once.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// The stored record.
    pub info: KeyInfo,
    /// The whole key (`gzt_…`). Never stored, never logged.
    pub secret: String,
}

/// What a verified key grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Who the key authenticates.
    pub identity: Identity,
    /// The component types it may register as (see [`Grant::may_register_as`]).
    pub component_types: Vec<String>,
    /// When it expires, if ever (ms since the epoch).
    pub expires_at: Option<u64>,
}

/// Component types a SERVICE key may register as only when its key names them: they
/// receive submissions, plans or leases of every user's tasks.
pub const CORE_COMPONENT_TYPES: &[&str] =
    &["queue-manager", "dependency-resolver", "execution-engine"];

impl Grant {
    /// Whether this grant allows registering as a component of type `kind`: ADMIN always;
    /// SERVICE for the types its key lists, or when it lists none for every type but the
    /// core services; no other role.
    pub fn may_register_as(&self, kind: &str) -> bool {
        match self.identity.role {
            Role::Admin => true,
            Role::Service if self.component_types.is_empty() => {
                !CORE_COMPONENT_TYPES.contains(&kind)
            }
            Role::Service => self.component_types.iter().any(|t| t == kind || t == "*"),
            _ => false,
        }
    }
}

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No key given, or not a Gleitzeit key, or no such key, or the secret does not match.
    #[error("invalid API key")]
    InvalidKey,
    /// The key expired.
    #[error("API key {0} expired")]
    Expired(String),
    /// The key was revoked.
    #[error("API key {0} was revoked")]
    Revoked(String),
    /// A user or key that should exist does not.
    #[error("{0} not found")]
    NotFound(String),
    /// A user that should not exist yet does.
    #[error("{0} already exists")]
    Exists(String),
    /// The key store was already initialised.
    #[error("the key store already has an admin")]
    AlreadyInitialised,
    /// A name or value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The storage failed.
    #[error("key store: {0}")]
    Store(String),
}

impl From<AuthError> for GzError {
    fn from(e: AuthError) -> GzError {
        let code = match &e {
            AuthError::InvalidKey => ErrorCode::AuthInvalid,
            AuthError::Expired(_) | AuthError::Revoked(_) => ErrorCode::AuthExpired,
            AuthError::NotFound(_) => ErrorCode::InvalidField,
            AuthError::Exists(_) | AuthError::Invalid(_) => ErrorCode::InvalidField,
            AuthError::AlreadyInitialised => ErrorCode::Usage,
            AuthError::Store(_) => ErrorCode::StoreFailed,
        };
        let err = GzError::new(code, e.to_string());
        match e {
            AuthError::AlreadyInitialised => err.with_hint(
                "sign in with the admin key (`gz auth login --api-key KEY --save`); \
                 to start over, remove auth.db from the data dir",
            ),
            _ => err,
        }
    }
}

/// Longest user or key name.
pub const MAX_NAME_LEN: usize = 64;

fn check_name(what: &str, name: &str) -> Result<(), AuthError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AuthError::Invalid(format!(
            "{what} {name:?} must be 1..={MAX_NAME_LEN} characters of letters, digits, '-', '_', '.', '@'"
        )))
    }
}

/// Where keys live.
pub enum KeyStore {
    /// An SQLite file (`<data dir>/auth.db`).
    Sqlite(sqlite_store::SqliteKeys),
    /// Redis (the hub mesh's); boxed, as a Redis client with TLS settings is large.
    Redis(Box<redis_store::RedisKeys>),
}

/// The key store's file in a data dir.
pub fn store_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("auth.db")
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> u64 {
    gleitzeit_protocol::envelope::now_millis()
}

impl KeyStore {
    /// Opens (creating if needed) the SQLite store of a data dir.
    pub fn open_dir(data_dir: &Path) -> Result<KeyStore, AuthError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| AuthError::Store(format!("cannot create {}: {e}", data_dir.display())))?;
        sqlite_store::SqliteKeys::open(&store_path(data_dir)).map(KeyStore::Sqlite)
    }

    /// Opens the store on a Redis server (`redis://` or `rediss://`, with AUTH in the URL).
    pub fn open_redis(url: &str) -> Result<KeyStore, AuthError> {
        redis_store::RedisKeys::open(url).map(|keys| KeyStore::Redis(Box::new(keys)))
    }

    fn backend(&self) -> &dyn Backend {
        match self {
            KeyStore::Sqlite(s) => s,
            KeyStore::Redis(r) => r.as_ref(),
        }
    }

    /// Creates the first admin user (`name`) and its first key. Fails when an admin exists.
    pub fn init(&self, name: &str) -> Result<NewKey, AuthError> {
        check_name("user name", name)?;
        if self
            .backend()
            .users()?
            .iter()
            .any(|u| u.role == Role::Admin)
        {
            return Err(AuthError::AlreadyInitialised);
        }
        self.create_user(name, Role::Admin)?;
        self.create_key("initial admin key", name, None, Vec::new())
    }

    /// Creates a user.
    pub fn create_user(&self, name: &str, role: Role) -> Result<User, AuthError> {
        check_name("user name", name)?;
        if role == Role::Hub {
            return Err(AuthError::Invalid(
                "HUB is not a role a user can have".into(),
            ));
        }
        let user = User {
            name: name.to_string(),
            role,
            created_at: now_millis(),
        };
        self.backend().insert_user(&user)?;
        Ok(user)
    }

    /// Every user, by name.
    pub fn users(&self) -> Result<Vec<User>, AuthError> {
        let mut users = self.backend().users()?;
        users.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(users)
    }

    /// One user.
    pub fn user(&self, name: &str) -> Result<Option<User>, AuthError> {
        self.backend().user(name)
    }

    /// Makes a key for `user`, valid for `expires_in_days` days if given.
    pub fn create_key(
        &self,
        name: &str,
        user: &str,
        expires_in_days: Option<u32>,
        component_types: Vec<String>,
    ) -> Result<NewKey, AuthError> {
        if name.is_empty() || name.len() > 200 {
            return Err(AuthError::Invalid("key names are 1..=200 bytes".into()));
        }
        if self.backend().user(user)?.is_none() {
            return Err(AuthError::NotFound(format!("user {user:?}")));
        }
        if let Some(days) = expires_in_days {
            if !(1..=3650).contains(&days) {
                return Err(AuthError::Invalid(
                    "--expires is a number of days in 1..=3650".into(),
                ));
            }
        }
        for t in &component_types {
            if t.is_empty() || t.len() > 256 {
                return Err(AuthError::Invalid(
                    "component types are 1..=256 bytes".into(),
                ));
            }
        }
        let now = now_millis();
        let (id, secret) = key::generate();
        let info = KeyInfo {
            id,
            name: name.to_string(),
            user: user.to_string(),
            created_at: now,
            expires_at: expires_in_days.map(|d| now + u64::from(d) * 86_400_000),
            revoked_at: None,
            component_types,
        };
        self.backend().insert_key(&info, &hash_key(&secret))?;
        Ok(NewKey { info, secret })
    }

    /// Every key (without secrets), newest first.
    pub fn keys(&self) -> Result<Vec<KeyInfo>, AuthError> {
        let mut keys: Vec<KeyInfo> = self
            .backend()
            .keys()?
            .into_iter()
            .map(|(info, _)| info)
            .collect();
        keys.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
        Ok(keys)
    }

    /// Revokes a key by id; returns its record. Revoking twice is not an error.
    pub fn revoke_key(&self, id: &str) -> Result<KeyInfo, AuthError> {
        let (mut info, _) = self
            .backend()
            .key(id)?
            .ok_or_else(|| AuthError::NotFound(format!("key {id:?}")))?;
        if info.revoked_at.is_none() {
            let now = now_millis();
            self.backend().set_revoked(id, now)?;
            info.revoked_at = Some(now);
        }
        Ok(info)
    }

    /// Whether the key with this id still works (exists, not revoked or expired, its user
    /// still there): how live sessions are checked again.
    pub fn key_valid(&self, id: &str) -> Result<bool, AuthError> {
        let Some((info, _)) = self.backend().key(id)? else {
            return Ok(false);
        };
        Ok(info.state(now_millis()) == "active" && self.backend().user(&info.user)?.is_some())
    }

    /// Checks a presented key: known id, matching secret (constant-time), not revoked,
    /// not expired, user still present.
    pub fn verify(&self, presented: &str) -> Result<Grant, AuthError> {
        let id = parse_key(presented).ok_or(AuthError::InvalidKey)?;
        let Some((info, stored_hash)) = self.backend().key(id)? else {
            return Err(AuthError::InvalidKey);
        };
        if !key::hashes_match(&hash_key(presented), &stored_hash) {
            return Err(AuthError::InvalidKey);
        }
        match info.state(now_millis()) {
            "revoked" => return Err(AuthError::Revoked(info.id)),
            "expired" => return Err(AuthError::Expired(info.id)),
            _ => {}
        }
        let user = self
            .backend()
            .user(&info.user)?
            .ok_or(AuthError::InvalidKey)?;
        Ok(Grant {
            identity: Identity {
                user: user.name,
                role: user.role,
                key_id: Some(info.id),
            },
            component_types: info.component_types,
            expires_at: info.expires_at,
        })
    }
}

/// What a storage backend provides; [`KeyStore`] holds the rules.
trait Backend {
    fn insert_user(&self, user: &User) -> Result<(), AuthError>;
    fn user(&self, name: &str) -> Result<Option<User>, AuthError>;
    fn users(&self) -> Result<Vec<User>, AuthError>;
    fn insert_key(&self, info: &KeyInfo, hash: &str) -> Result<(), AuthError>;
    fn key(&self, id: &str) -> Result<Option<(KeyInfo, String)>, AuthError>;
    fn keys(&self) -> Result<Vec<(KeyInfo, String)>, AuthError>;
    fn set_revoked(&self, id: &str, at: u64) -> Result<(), AuthError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (KeyStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("gz-auth-{:016x}", rand::random::<u64>()));
        let store = KeyStore::open_dir(&dir).expect("opens");
        (store, dir)
    }

    #[test]
    fn init_makes_an_admin_whose_key_verifies_once_only_init() {
        let (store, dir) = temp_store();
        let admin = store.init("admin").expect("init");
        assert!(admin.secret.starts_with("gzt_"));
        let grant = store.verify(&admin.secret).expect("verifies");
        assert_eq!(grant.identity.role, Role::Admin);
        assert_eq!(grant.identity.user, "admin");
        assert!(matches!(
            store.init("other"),
            Err(AuthError::AlreadyInitialised)
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn wrong_revoked_and_expired_keys_are_refused() {
        let (store, dir) = temp_store();
        store.create_user("alice", Role::User).expect("user");
        let key = store
            .create_key("laptop", "alice", None, vec![])
            .expect("key");
        // Same id, other secret.
        let mut forged = key.secret.clone();
        forged.pop();
        forged.push(if key.secret.ends_with('0') { '1' } else { '0' });
        assert!(matches!(store.verify(&forged), Err(AuthError::InvalidKey)));
        assert!(matches!(
            store.verify("gzt_nonsense"),
            Err(AuthError::InvalidKey)
        ));
        assert!(matches!(store.verify(""), Err(AuthError::InvalidKey)));
        store.revoke_key(&key.info.id).expect("revoke");
        assert!(matches!(
            store.verify(&key.secret),
            Err(AuthError::Revoked(_))
        ));
        let listed = store.keys().expect("keys");
        assert_eq!(listed[0].state(now_millis()), "revoked");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_store_never_holds_the_secret() {
        let (store, dir) = temp_store();
        let key = store.init("root").expect("init");
        let bytes = std::fs::read(store_path(&dir)).expect("db file");
        let secret_part = key.secret.rsplit('_').next().unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(secret_part));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn keys_expire_after_their_days() {
        let (store, dir) = temp_store();
        store.create_user("erin", Role::User).expect("user");
        let key = store
            .create_key("short", "erin", Some(30), vec![])
            .expect("key");
        let expires = key.info.expires_at.expect("expiry set");
        assert_eq!(expires - key.info.created_at, 30 * 86_400_000);
        assert_eq!(key.info.state(expires - 1), "active");
        assert_eq!(key.info.state(expires), "expired");
        assert!(store.verify(&key.secret).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn service_keys_register_only_as_allowed_types() {
        let grant = |role, types: Vec<String>| Grant {
            identity: Identity {
                user: "svc".into(),
                role,
                key_id: None,
            },
            component_types: types,
            expires_at: None,
        };
        let default = grant(Role::Service, vec![]);
        assert!(default.may_register_as("python-provider"));
        assert!(!default.may_register_as("queue-manager"));
        let qm = grant(Role::Service, vec!["queue-manager".into()]);
        assert!(qm.may_register_as("queue-manager"));
        assert!(!qm.may_register_as("python-provider"));
        assert!(!grant(Role::User, vec![]).may_register_as("python-provider"));
        assert!(!grant(Role::Operator, vec![]).may_register_as("python-provider"));
        assert!(grant(Role::Admin, vec![]).may_register_as("queue-manager"));
    }

    #[test]
    fn bad_names_and_unknown_users_are_refused() {
        let (store, dir) = temp_store();
        assert!(store.create_user("", Role::User).is_err());
        assert!(store.create_user("a b", Role::User).is_err());
        assert!(store.create_user("x", Role::Hub).is_err());
        assert!(matches!(
            store.create_key("k", "ghost", None, vec![]),
            Err(AuthError::NotFound(_))
        ));
        store.create_user("bob", Role::Viewer).expect("user");
        assert!(matches!(
            store.create_user("bob", Role::User),
            Err(AuthError::Exists(_))
        ));
        assert!(store.create_key("k", "bob", Some(0), vec![]).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn rediss_urls_are_accepted_and_errors_never_show_the_password() {
        // Nothing listens on port 1: the connection fails before any TLS or AUTH.
        let store = KeyStore::open_redis("rediss://:s3cret-pw@127.0.0.1:1/0");
        let store = store.expect("a rediss:// URL is accepted");
        let err = store
            .users()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!err.is_empty());
        assert!(!err.contains("s3cret-pw"), "{err}");
    }
}
