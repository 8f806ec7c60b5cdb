//! `gz auth`: the admin's first key, signing in, and user and key management.
//!
//! `gz auth init` writes to the key store directly (it works before any hub runs); every
//! other command goes through the hub with the caller's key (ADMIN for users and keys).
//! Secrets are printed once, when made, and never otherwise.

use std::path::PathBuf;

use clap::Subcommand;
use gleitzeit_auth::KeyStore;
use gleitzeit_hub_client::HubClient;
use gleitzeit_protocol::{events, ErrorCode, GzError, Target};
use gleitzeit_runtime::credentials::{self as creds, KeySource, SavedLogin};
use serde_json::{json, Value};

use crate::credentials::api_key;
use crate::CmdResult;

/// `gz auth` subcommands.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthArgs {
    #[command(subcommand)]
    command: AuthCommand,
}

#[derive(Debug, Clone, Subcommand)]
enum AuthCommand {
    /// Create the first admin user and print its API key once (writes the key store of the
    /// data dir, or of the mesh Redis; no hub needed).
    Init {
        /// The admin's user name.
        #[arg(long, default_value = "admin")]
        name: String,
        /// Data dir whose key store to initialise.
        #[arg(long, env = "GLEITZEIT_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Initialise the key store of a hub mesh on this Redis instead.
        #[arg(long, env = "GLEITZEIT_HUB_REDIS_URL")]
        redis_url: Option<String>,
        /// Also save the key as this machine's login.
        #[arg(long)]
        save: bool,
        /// Write the key to this file (mode 0600) instead of printing it.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Succeed without change when the key file already holds a valid key; when the
        /// store has an admin but the file is gone, make that admin a new key (containers
        /// run this at every start).
        #[arg(long)]
        if_missing: bool,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Check a key given with --api-key (or GLEITZEIT_API_KEY) against the hub, and save
    /// it with --save.
    Login {
        /// Save it as this machine's login (mode 0600).
        #[arg(long)]
        save: bool,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Which key is in use, and who the hub says it is.
    Status {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Forget the saved login.
    Logout {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Users (ADMIN).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API keys (ADMIN).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Debug, Clone, Subcommand)]
enum UserCommand {
    /// Create a user with a role (ADMIN, OPERATOR, USER, SERVICE, VIEWER).
    Create {
        /// User name.
        name: String,
        /// Role.
        #[arg(long)]
        role: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// List users.
    List {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Subcommand)]
enum KeyCommand {
    /// Make a key for a user and print it once.
    Create {
        /// What the key is for.
        name: String,
        /// Its user.
        #[arg(long)]
        user: String,
        /// Expires after this many days.
        #[arg(long)]
        expires: Option<u32>,
        /// For SERVICE users: component types the key may register as, comma-separated
        /// (default: every type but queue-manager, dependency-resolver, execution-engine).
        #[arg(long, value_delimiter = ',')]
        component_types: Vec<String>,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; its connections are closed.
    Revoke {
        /// Key id (from `gz auth key list`).
        id: String,
        /// Print one JSON document.
        #[arg(long)]
        json: bool,
    },
}

impl AuthArgs {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        match &self.command {
            AuthCommand::Init { json, .. }
            | AuthCommand::Login { json, .. }
            | AuthCommand::Status { json }
            | AuthCommand::Logout { json } => *json,
            AuthCommand::User { command } => match command {
                UserCommand::Create { json, .. } | UserCommand::List { json } => *json,
            },
            AuthCommand::Key { command } => match command {
                KeyCommand::Create { json, .. }
                | KeyCommand::List { json }
                | KeyCommand::Revoke { json, .. } => *json,
            },
        }
    }
}

/// `gz auth …`.
pub async fn run(hub_url: &str, args: AuthArgs) -> CmdResult {
    match args.command {
        AuthCommand::Init {
            name,
            data_dir,
            redis_url,
            save,
            key_file,
            if_missing,
            json,
        } => {
            let target = InitTarget {
                data_dir,
                redis_url,
                key_file,
                if_missing,
            };
            init(hub_url, &name, target, save, json)
        }
        AuthCommand::Login { save, json } => {
            let key = match api_key() {
                Some((key, KeySource::Environment)) => key,
                _ => {
                    return Err(GzError::new(
                        ErrorCode::Usage,
                        "give the key to sign in with: gz auth login --api-key KEY [--save]",
                    )
                    .into())
                }
            };
            login(hub_url, &key, save, json).await
        }
        AuthCommand::Status { json } => status(hub_url, json).await,
        AuthCommand::Logout { json } => logout(json),
        AuthCommand::User { command } => match command {
            UserCommand::Create { name, role, json } => {
                let user = ask(
                    hub_url,
                    events::AUTH_USER_CREATE,
                    json!({"name": name, "role": role}),
                )
                .await?;
                print(json, &user, || {
                    format!(
                        "created user {} ({})",
                        user["name"].as_str().unwrap_or(""),
                        user["role"].as_str().unwrap_or("")
                    )
                })
            }
            UserCommand::List { json } => {
                let users = ask(hub_url, events::AUTH_USER_LIST, Value::Null).await?;
                print(json, &users, || table(&users, &["name", "role"]))
            }
        },
        AuthCommand::Key { command } => match command {
            KeyCommand::Create {
                name,
                user,
                expires,
                component_types,
                json,
            } => {
                let made = ask(
                    hub_url,
                    events::AUTH_KEY_CREATE,
                    json!({"name": name, "user": user, "expires_days": expires, "component_types": component_types}),
                )
                .await?;
                print(json, &made, || {
                    format!(
                        "created key {} for {}; it is shown this once:\n{}",
                        made["key"]["id"].as_str().unwrap_or(""),
                        made["key"]["user"].as_str().unwrap_or(""),
                        made["api_key"].as_str().unwrap_or("")
                    )
                })
            }
            KeyCommand::List { json } => {
                let keys = ask(hub_url, events::AUTH_KEY_LIST, Value::Null).await?;
                print(json, &keys, || {
                    table(&keys, &["id", "user", "state", "name"])
                })
            }
            KeyCommand::Revoke { id, json } => {
                let key = ask(hub_url, events::AUTH_KEY_REVOKE, json!({"id": id})).await?;
                print(json, &key, || {
                    format!("revoked key {}", key["id"].as_str().unwrap_or(""))
                })
            }
        },
    }
}

fn print(json_out: bool, doc: &Value, text: impl FnOnce() -> String) -> CmdResult {
    if json_out {
        println!("{doc}");
    } else {
        println!("{}", text());
    }
    Ok(0)
}

fn table(rows: &Value, columns: &[&str]) -> String {
    let rows = rows.as_array().cloned().unwrap_or_default();
    let mut out = columns.join("\t").to_uppercase();
    for r in rows {
        let cells: Vec<String> = columns
            .iter()
            .map(|c| match &r[*c] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                v => v.to_string(),
            })
            .collect();
        out.push('\n');
        out.push_str(&cells.join("\t"));
    }
    out
}

/// One request to the hub with the caller's key.
async fn ask(hub_url: &str, event: &str, payload: Value) -> Result<Value, GzError> {
    let (client, _incoming) = crate::workflow::connect(hub_url).await?;
    let answer = client.request(Target::Hub, event, payload).await;
    client.close().await;
    answer
}

/// Where `gz auth init` writes.
struct InitTarget {
    data_dir: Option<PathBuf>,
    redis_url: Option<String>,
    key_file: Option<PathBuf>,
    if_missing: bool,
}

fn init(hub_url: &str, name: &str, target: InitTarget, save: bool, json_out: bool) -> CmdResult {
    let (store, place) = match &target.redis_url {
        Some(url) => (
            KeyStore::open_redis(url),
            format!("Redis {}", gleitzeit_protocol::identity::redact_url(url)),
        ),
        None => {
            let dir = target
                .data_dir
                .unwrap_or_else(gleitzeit_runtime::default_data_dir);
            let place = gleitzeit_auth::store_path(&dir).display().to_string();
            (KeyStore::open_dir(&dir), place)
        }
    };
    let store = store.map_err(GzError::from)?;
    if target.if_missing {
        let existing = target.key_file.as_deref().and_then(creds::read_key_file);
        if let Some(key) = existing.filter(|k| store.verify(k).is_ok()) {
            let id = gleitzeit_auth::parse_key(&key)
                .unwrap_or_default()
                .to_string();
            return print(
                json_out,
                &json!({"created": false, "key_id": id, "store": place}),
                || format!("the key store in {place} is initialised; key {id} is valid"),
            );
        }
    }
    let made = match store.init(name) {
        Ok(made) => made,
        Err(gleitzeit_auth::AuthError::AlreadyInitialised) if target.if_missing => {
            let admin = store
                .users()
                .map_err(GzError::from)?
                .into_iter()
                .find(|u| u.role == gleitzeit_protocol::Role::Admin)
                .ok_or_else(|| GzError::new(ErrorCode::Internal, "no admin user found"))?;
            store
                .create_key("initial admin key", &admin.name, None, Vec::new())
                .map_err(GzError::from)?
        }
        Err(e) => return Err(GzError::from(e).into()),
    };
    if let Some(path) = &target.key_file {
        creds::write_private(path, made.secret.as_bytes()).map_err(|e| {
            GzError::new(
                ErrorCode::StoreFailed,
                format!("cannot write {}: {e}", path.display()),
            )
        })?;
    }
    if save {
        save_login(&made.secret, hub_url)?;
    }
    let shown = target.key_file.is_none().then_some(made.secret.as_str());
    if json_out {
        println!(
            "{}",
            json!({"created": true, "user": made.info.user, "role": "ADMIN", "key_id": made.info.id, "api_key": shown,
                   "key_file": target.key_file, "store": place, "saved": save})
        );
    } else {
        println!("created an admin key for {:?} in {place}", made.info.user);
        match (&target.key_file, shown) {
            (Some(path), _) => println!("the key is in {} (mode 0600)", path.display()),
            (None, Some(secret)) => {
                println!("its API key is shown this once; keep it safe:\n{secret}")
            }
            (None, None) => {}
        }
        if save {
            println!("saved as this machine's login");
        } else if target.key_file.is_none() {
            println!(
                "sign in with: gz auth login --api-key <key> --save  (or set GLEITZEIT_API_KEY)"
            );
        }
    }
    Ok(0)
}

fn save_login(key: &str, hub_url: &str) -> Result<PathBuf, GzError> {
    creds::save_login(&SavedLogin {
        api_key: key.to_string(),
        hub_url: Some(hub_url.to_string()),
    })
    .map_err(|e| {
        GzError::new(
            ErrorCode::StoreFailed,
            format!("cannot save the login: {e}"),
        )
    })
}

async fn whoami(hub_url: &str, key: &str) -> Result<Value, GzError> {
    let config = crate::credentials::client_config(hub_url).with_api_key(key);
    let (client, _incoming) = HubClient::connect(config).await.map_err(GzError::from)?;
    let answer = client
        .request(Target::Hub, events::AUTH_WHOAMI, Value::Null)
        .await;
    client.close().await;
    answer
}

async fn login(hub_url: &str, key: &str, save: bool, json_out: bool) -> CmdResult {
    if gleitzeit_auth::parse_key(key).is_none() {
        return Err(GzError::new(
            ErrorCode::AuthInvalid,
            "that is not a Gleitzeit API key (gzt_<id>_<secret>)",
        )
        .into());
    }
    let me = whoami(hub_url, key).await?;
    let saved = if save {
        Some(save_login(key, hub_url)?)
    } else {
        None
    };
    print(
        json_out,
        &json!({"identity": me, "saved": saved.is_some()}),
        || {
            let mut s = format!(
                "signed in to {hub_url} as {} ({})",
                me["user"].as_str().unwrap_or(""),
                me["role"].as_str().unwrap_or("")
            );
            if let Some(path) = &saved {
                s.push_str(&format!("; saved in {}", path.display()));
            }
            s
        },
    )
}

async fn status(hub_url: &str, json_out: bool) -> CmdResult {
    let Some((key, source)) = api_key() else {
        let doc = json!({"logged_in": false});
        print(json_out, &doc, || {
            "not signed in: set GLEITZEIT_API_KEY or run `gz auth login --api-key KEY --save`"
                .into()
        })?;
        return Ok(1);
    };
    let key_id = gleitzeit_auth::parse_key(&key).map(str::to_string);
    let me = whoami(hub_url, &key).await?;
    let doc = json!({
        "logged_in": true,
        "source": source.describe(),
        "key_id": key_id,
        "hub_url": hub_url,
        "identity": me,
    });
    print(json_out, &doc, || {
        format!(
            "{} ({}) at {hub_url}\nkey {} from {}",
            me["user"].as_str().unwrap_or(""),
            me["role"].as_str().unwrap_or(""),
            key_id.as_deref().unwrap_or("?"),
            source.describe()
        )
    })
}

fn logout(json_out: bool) -> CmdResult {
    let removed =
        creds::remove_login().map_err(|e| GzError::new(ErrorCode::StoreFailed, e.to_string()))?;
    let env_key = std::env::var(creds::API_KEY_ENV).is_ok_and(|k| !k.is_empty());
    print(
        json_out,
        &json!({"removed": removed, "env_key_set": env_key}),
        || {
            let mut s = if removed {
                "signed out (saved login removed)".to_string()
            } else {
                "no saved login".to_string()
            };
            if env_key {
                s.push_str("; GLEITZEIT_API_KEY is still set in this shell");
            }
            s
        },
    )
}
