//! Where a client's or service's API key comes from, in this order:
//! 1. `GLEITZEIT_API_KEY`, else the file named by `GLEITZEIT_API_KEY_FILE` (for container
//!    secrets: `docker compose` hands every service the suite's key this way);
//! 2. the saved login (`gz auth login --api-key KEY --save`): `credentials.json` in
//!    `$GLEITZEIT_CONFIG_DIR`, else `$XDG_CONFIG_HOME/gleitzeit`, else
//!    `~/.config/gleitzeit` (readable by its owner only);
//! 3. the local suite's key, `local.key` in the data dir (written by `gz run` / `gz start`
//!    for the suite they start, so a laptop needs no setup).
//!
//! Keys are secrets: nothing here logs or prints them.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The environment variable holding an API key.
pub const API_KEY_ENV: &str = "GLEITZEIT_API_KEY";

/// The environment variable naming a file that holds an API key.
pub const API_KEY_FILE_ENV: &str = "GLEITZEIT_API_KEY_FILE";

/// File name of the local suite's key in the data dir.
pub const LOCAL_KEY_FILE: &str = "local.key";

/// A saved login.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SavedLogin {
    /// The key.
    pub api_key: String,
    /// The hub it was checked against, for `gz auth status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_url: Option<String>,
}

/// Where a key was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// `GLEITZEIT_API_KEY`.
    Environment,
    /// The file named by `GLEITZEIT_API_KEY_FILE`.
    KeyFile,
    /// The saved login.
    SavedLogin,
    /// The local suite's key in the data dir.
    LocalSuite,
}

impl KeySource {
    /// A short description for `gz auth status`.
    pub fn describe(self) -> &'static str {
        match self {
            KeySource::Environment => "GLEITZEIT_API_KEY",
            KeySource::KeyFile => "GLEITZEIT_API_KEY_FILE",
            KeySource::SavedLogin => "saved login",
            KeySource::LocalSuite => "local suite key",
        }
    }
}

/// The directory of the saved login.
pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GLEITZEIT_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("gleitzeit");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".config/gleitzeit"),
        None => std::env::temp_dir().join("gleitzeit-config"),
    }
}

/// The saved login's file.
pub fn login_file() -> PathBuf {
    config_dir().join("credentials.json")
}

/// The saved login, if any.
pub fn saved_login() -> Option<SavedLogin> {
    let text = std::fs::read_to_string(login_file()).ok()?;
    serde_json::from_str(&text).ok()
}

/// Saves a login (file mode 0600).
pub fn save_login(login: &SavedLogin) -> std::io::Result<PathBuf> {
    let path = login_file();
    let json = serde_json::to_string_pretty(login).map_err(std::io::Error::other)?;
    write_private(&path, json.as_bytes())?;
    Ok(path)
}

/// Removes the saved login; true when there was one.
pub fn remove_login() -> std::io::Result<bool> {
    match std::fs::remove_file(login_file()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The local suite's key in `data_dir`, if one was written.
pub fn local_key(data_dir: &Path) -> Option<String> {
    read_key_file(&data_dir.join(LOCAL_KEY_FILE))
}

/// The key in a file (surrounding white space ignored), if the file has one.
pub fn read_key_file(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Writes a file only its owner can read (created with mode 0600, parents as needed).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    std::io::Write::write_all(&mut file, bytes)
}

/// The API key to use, and where it came from (see the module doc for the order).
pub fn api_key() -> Option<(String, KeySource)> {
    if let Some(k) = std::env::var(API_KEY_ENV).ok().filter(|k| !k.is_empty()) {
        return Some((k, KeySource::Environment));
    }
    if let Some(path) = std::env::var_os(API_KEY_FILE_ENV).filter(|p| !p.is_empty()) {
        if let Some(k) = read_key_file(Path::new(&path)) {
            return Some((k, KeySource::KeyFile));
        }
    }
    if let Some(login) = saved_login() {
        return Some((login.api_key, KeySource::SavedLogin));
    }
    local_key(&crate::default_data_dir()).map(|k| (k, KeySource::LocalSuite))
}
