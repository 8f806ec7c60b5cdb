//! The key store in Redis, for a hub mesh: every hub given the mesh's Redis sees the same
//! users and keys. Keys: `gz:auth:user:<name>` and `gz:auth:key:<id>` (JSON strings), and the
//! sets `gz:auth:users` and `gz:auth:keys` listing them.

use std::sync::Mutex;
use std::time::Duration;

use redis::Commands;
use serde::{Deserialize, Serialize};

use crate::{AuthError, Backend, KeyInfo, User};

/// Users and keys in Redis.
pub struct RedisKeys {
    client: redis::Client,
    conn: Mutex<Option<redis::Connection>>,
}

#[derive(Serialize, Deserialize)]
struct StoredKey {
    #[serde(flatten)]
    info: KeyInfo,
    hash: String,
}

fn store_err(e: impl std::fmt::Display) -> AuthError {
    AuthError::Store(e.to_string())
}

fn user_key(name: &str) -> String {
    format!("gz:auth:user:{name}")
}

fn key_key(id: &str) -> String {
    format!("gz:auth:key:{id}")
}

impl RedisKeys {
    pub(crate) fn open(url: &str) -> Result<RedisKeys, AuthError> {
        let client = redis::Client::open(url).map_err(store_err)?;
        Ok(RedisKeys {
            client,
            conn: Mutex::new(None),
        })
    }

    /// Runs `f` on a connection, opening (or re-opening after a failure) as needed.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, AuthError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let conn = self
                .client
                .get_connection_with_timeout(Duration::from_secs(3))
                .map_err(store_err)?;
            conn.set_read_timeout(Some(Duration::from_secs(3)))
                .map_err(store_err)?;
            *guard = Some(conn);
        }
        let Some(conn) = guard.as_mut() else {
            return Err(AuthError::Store("no Redis connection".into()));
        };
        let result = f(conn);
        if result.is_err() {
            *guard = None;
        }
        result.map_err(store_err)
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<T>, AuthError> {
        let raw: Option<String> = self.with(|c| c.get(key))?;
        raw.map(|s| serde_json::from_str(&s).map_err(store_err))
            .transpose()
    }

    fn all<T: for<'de> Deserialize<'de>>(
        &self,
        set: &str,
        key_of: fn(&str) -> String,
    ) -> Result<Vec<T>, AuthError> {
        let members: Vec<String> = self.with(|c| c.smembers(set))?;
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            if let Some(v) = self.get_json(&key_of(&m))? {
                out.push(v);
            }
        }
        Ok(out)
    }
}

impl Backend for RedisKeys {
    fn insert_user(&self, user: &User) -> Result<(), AuthError> {
        let json = serde_json::to_string(user).map_err(store_err)?;
        let name = user.name.clone();
        let added: bool = self.with(|c| c.set_nx(user_key(&name), json))?;
        if !added {
            return Err(AuthError::Exists(format!("user {:?}", user.name)));
        }
        self.with(|c| c.sadd::<_, _, ()>("gz:auth:users", &name))
    }

    fn user(&self, name: &str) -> Result<Option<User>, AuthError> {
        self.get_json(&user_key(name))
    }

    fn users(&self) -> Result<Vec<User>, AuthError> {
        self.all("gz:auth:users", user_key)
    }

    fn insert_key(&self, info: &KeyInfo, hash: &str) -> Result<(), AuthError> {
        let stored = StoredKey {
            info: info.clone(),
            hash: hash.to_string(),
        };
        let json = serde_json::to_string(&stored).map_err(store_err)?;
        self.with(|c| {
            redis::pipe()
                .atomic()
                .set(key_key(&info.id), json)
                .sadd("gz:auth:keys", &info.id)
                .query::<()>(c)
        })
    }

    fn key(&self, id: &str) -> Result<Option<(KeyInfo, String)>, AuthError> {
        Ok(self
            .get_json::<StoredKey>(&key_key(id))?
            .map(|s| (s.info, s.hash)))
    }

    fn keys(&self) -> Result<Vec<(KeyInfo, String)>, AuthError> {
        Ok(self
            .all::<StoredKey>("gz:auth:keys", key_key)?
            .into_iter()
            .map(|s| (s.info, s.hash))
            .collect())
    }

    fn set_revoked(&self, id: &str, at: u64) -> Result<(), AuthError> {
        if let Some(mut stored) = self.get_json::<StoredKey>(&key_key(id))? {
            if stored.info.revoked_at.is_none() {
                stored.info.revoked_at = Some(at);
                let json = serde_json::to_string(&stored).map_err(store_err)?;
                self.with(|c| c.set::<_, _, ()>(key_key(id), json))?;
            }
        }
        Ok(())
    }
}
