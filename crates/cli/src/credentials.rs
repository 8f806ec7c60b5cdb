//! The key `gz` presents: `--api-key` / `GLEITZEIT_API_KEY`, else the saved login, else the
//! local suite's key (see [`gleitzeit_runtime::credentials`]). When `gz` starts a local suite
//! itself it makes (or reuses) that suite's key and uses it for its own connections.

use std::path::Path;
use std::sync::Mutex;

use gleitzeit_auth::KeyStore;
use gleitzeit_hub_client::ClientConfig;
use gleitzeit_protocol::{ErrorCode, GzError, Role};
use gleitzeit_runtime::credentials::{self as creds, KeySource};

/// The key chosen for this run of `gz`: by `--api-key`, replaced by the local suite's key
/// when `gz` starts a suite of its own (that suite knows no other key).
static CHOSEN: Mutex<Option<(String, KeySource)>> = Mutex::new(None);

/// Uses `key` for every connection of this process from now on.
pub fn choose(key: String, source: KeySource) {
    *CHOSEN.lock().unwrap_or_else(|p| p.into_inner()) = Some((key, source));
}

/// The key to present and where it came from.
pub fn api_key() -> Option<(String, KeySource)> {
    let chosen = CHOSEN.lock().unwrap_or_else(|p| p.into_inner()).clone();
    chosen.or_else(creds::api_key)
}

/// A plain client's config presenting the chosen key.
pub fn client_config(url: &str) -> ClientConfig {
    let config = ClientConfig::client(url);
    match api_key() {
        Some((key, _)) => config.with_api_key(&key),
        None => config,
    }
}

/// The user name of the local suite's key.
const LOCAL_USER: &str = "local";

/// Makes sure the local suite's key exists in the key store the suite's hub will use (the
/// data dir's, or the mesh Redis given) and is saved in `<data_dir>/local.key`; returns it.
/// The key belongs to the ADMIN user `local`: whoever can read the data dir owns the suite.
pub fn ensure_local_key(data_dir: &Path, redis_url: Option<&str>) -> Result<String, GzError> {
    let store = match redis_url {
        Some(url) => KeyStore::open_redis(url),
        None => KeyStore::open_dir(data_dir),
    }
    .map_err(GzError::from)?;
    if let Some(key) = creds::local_key(data_dir) {
        if store.verify(&key).is_ok() {
            return Ok(key);
        }
    }
    match store.user(LOCAL_USER).map_err(GzError::from)? {
        Some(u) if u.role == Role::Admin => {}
        Some(_) => {
            return Err(GzError::new(
                ErrorCode::AuthInvalid,
                "the key store has a user named \"local\" that is not an admin",
            )
            .with_hint(
                "the local suite's key belongs to the ADMIN user \"local\"; rename that user",
            ))
        }
        None => {
            store
                .create_user(LOCAL_USER, Role::Admin)
                .map_err(GzError::from)?;
        }
    }
    let key = store
        .create_key("local suite", LOCAL_USER, None, Vec::new())
        .map_err(GzError::from)?;
    let path = data_dir.join(creds::LOCAL_KEY_FILE);
    creds::write_private(&path, key.secret.as_bytes()).map_err(|e| {
        GzError::new(
            ErrorCode::StoreFailed,
            format!("cannot write {}: {e}", path.display()),
        )
    })?;
    Ok(key.secret)
}
