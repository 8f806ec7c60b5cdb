//! Users and keys as the identity events carry them (`auth_whoami`, `auth_user_*`,
//! `auth_key_*`). The key store (`gleitzeit-auth`) keeps exactly these records; secrets are
//! never part of them (a new key's secret travels once, in [`KeyCreated`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::identity::Role;

/// A user: a name and a role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct User {
    /// Unique name.
    pub name: String,
    /// What the user may do.
    pub role: Role,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KeyInfo {
    /// Public id (12 hex digits).
    pub id: String,
    /// What the key is for (free text given at creation).
    pub name: String,
    /// The user the key belongs to.
    pub user: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// When the key stops working (ms since the epoch), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// When the key was revoked (ms since the epoch), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// For SERVICE users: the component types this key may register as. Empty: the
    /// default, every type except the core services (queue-manager, dependency-resolver,
    /// execution-engine).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component_types: Vec<String>,
}

impl KeyInfo {
    /// `active`, `expired` or `revoked` at time `now` (ms since the epoch).
    pub fn state(&self, now: u64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.expires_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        }
    }
}

/// Payload of `auth_user_create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UserCreate {
    /// Unique name.
    pub name: String,
    /// Role name, case-insensitive (`readonly` means VIEWER).
    pub role: String,
}

/// Payload of `auth_key_create`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyCreate {
    /// What the key is for.
    pub name: String,
    /// The user the key belongs to.
    pub user: String,
    /// Days until it expires (1..=3650); never when absent.
    #[serde(default)]
    pub expires_days: Option<u32>,
    /// For SERVICE users: the component types the key may register as.
    #[serde(default)]
    pub component_types: Vec<String>,
}

/// Payload of `auth_key_revoke`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyRevoke {
    /// The key's public id.
    pub id: String,
}

/// Reply of `auth_key_create`: the record, and the secret shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KeyCreated {
    /// The stored record.
    pub key: KeyInfo,
    /// The whole key (`gzt_…`).
    pub api_key: String,
}

/// One row of the reply of `auth_key_list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListedKey {
    /// The stored record.
    #[serde(flatten)]
    pub key: KeyInfo,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

/// Reply of `auth_whoami`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WhoAmI {
    /// The authenticated user.
    pub user: String,
    /// Its role.
    pub role: Role,
    /// The key used (none when authentication is off).
    pub key_id: Option<String>,
    /// When that key expires (ms since the epoch), if ever.
    pub expires_at: Option<u64>,
    /// Component types the key may register as (SERVICE keys).
    pub component_types: Vec<String>,
    /// `required` or `off`.
    pub auth: String,
}
