//! The key store in an SQLite file (`<data dir>/auth.db`, readable by its owner only).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use gleitzeit_protocol::Role;
use rusqlite::{params, Connection, OptionalExtension};

use crate::{AuthError, Backend, KeyInfo, User};

/// Users and keys in one SQLite file.
pub struct SqliteKeys {
    conn: Mutex<Connection>,
}

fn store_err(e: rusqlite::Error) -> AuthError {
    AuthError::Store(e.to_string())
}

impl SqliteKeys {
    pub(crate) fn open(path: &Path) -> Result<SqliteKeys, AuthError> {
        let conn = Connection::open(path).map_err(store_err)?;
        restrict_permissions(path);
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(store_err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS users (
                 name TEXT PRIMARY KEY, role TEXT NOT NULL, created_at INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS api_keys (
                 id TEXT PRIMARY KEY, name TEXT NOT NULL, user TEXT NOT NULL,
                 hash TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER,
                 revoked_at INTEGER, component_types TEXT NOT NULL DEFAULT '[]');",
        )
        .map_err(store_err)?;
        Ok(SqliteKeys {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The file holds key hashes: only its owner may read it.
fn restrict_permissions(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}

fn role_of(s: String) -> rusqlite::Result<Role> {
    s.parse()
        .map_err(|e: gleitzeit_protocol::identity::UnknownRole| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
}

fn user_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        name: row.get(0)?,
        role: role_of(row.get(1)?)?,
        created_at: row.get::<_, i64>(2)?.max(0) as u64,
    })
}

fn key_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(KeyInfo, String)> {
    let types: String = row.get(7)?;
    let info = KeyInfo {
        id: row.get(0)?,
        name: row.get(1)?,
        user: row.get(2)?,
        created_at: row.get::<_, i64>(4)?.max(0) as u64,
        expires_at: row.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
        revoked_at: row.get::<_, Option<i64>>(6)?.map(|v| v.max(0) as u64),
        component_types: serde_json::from_str(&types).unwrap_or_default(),
    };
    Ok((info, row.get(3)?))
}

const KEY_COLUMNS: &str =
    "id, name, user, hash, created_at, expires_at, revoked_at, component_types";

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Backend for SqliteKeys {
    fn insert_user(&self, user: &User) -> Result<(), AuthError> {
        let inserted = self
            .conn()
            .execute(
                "INSERT OR IGNORE INTO users (name, role, created_at) VALUES (?1, ?2, ?3)",
                params![user.name, user.role.as_str(), as_i64(user.created_at)],
            )
            .map_err(store_err)?;
        if inserted == 0 {
            return Err(AuthError::Exists(format!("user {:?}", user.name)));
        }
        Ok(())
    }

    fn user(&self, name: &str) -> Result<Option<User>, AuthError> {
        self.conn()
            .query_row(
                "SELECT name, role, created_at FROM users WHERE name = ?1",
                [name],
                user_row,
            )
            .optional()
            .map_err(store_err)
    }

    fn users(&self) -> Result<Vec<User>, AuthError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, role, created_at FROM users")
            .map_err(store_err)?;
        let rows = stmt.query_map([], user_row).map_err(store_err)?;
        rows.collect::<Result<_, _>>().map_err(store_err)
    }

    fn insert_key(&self, info: &KeyInfo, hash: &str) -> Result<(), AuthError> {
        let types = serde_json::to_string(&info.component_types)
            .map_err(|e| AuthError::Store(e.to_string()))?;
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    info.id,
                    info.name,
                    info.user,
                    hash,
                    as_i64(info.created_at),
                    info.expires_at.map(as_i64),
                    info.revoked_at.map(as_i64),
                    types
                ],
            )
            .map_err(store_err)?;
        Ok(())
    }

    fn key(&self, id: &str) -> Result<Option<(KeyInfo, String)>, AuthError> {
        self.conn()
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
                [id],
                key_row,
            )
            .optional()
            .map_err(store_err)
    }

    fn keys(&self) -> Result<Vec<(KeyInfo, String)>, AuthError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {KEY_COLUMNS} FROM api_keys"))
            .map_err(store_err)?;
        let rows = stmt.query_map([], key_row).map_err(store_err)?;
        rows.collect::<Result<_, _>>().map_err(store_err)
    }

    fn set_revoked(&self, id: &str, at: u64) -> Result<(), AuthError> {
        self.conn()
            .execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
                params![id, as_i64(at)],
            )
            .map_err(store_err)?;
        Ok(())
    }
}
