//! Who sent a message: the roles of the permission model and the identity the hub
//! authenticates at connect time and stamps on every envelope it forwards.
//!
//! Clients never choose their identity: whatever a client puts in [`crate::Envelope::auth`]
//! is overwritten by the hub. Components trust only what the hub stamped.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A role, as given to a user (`gz auth user create NAME --role R`).
///
/// `docs/security.md` has the table of what each role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Role {
    /// Everything, including key management.
    Admin,
    /// All workflows (read, cancel), shutdown, component administration.
    Operator,
    /// Submits workflows; watches, reads and cancels its own.
    User,
    /// Registers as a component of the types its key allows.
    Service,
    /// Read-only: dashboards, metrics, every workflow.
    Viewer,
    /// The hub itself (stamped on messages the hub originates; no key has it).
    Hub,
}

impl Role {
    /// The roles a user can be given (every role but [`Role::Hub`]).
    pub const ASSIGNABLE: &'static [Role] = &[
        Role::Admin,
        Role::Operator,
        Role::User,
        Role::Service,
        Role::Viewer,
    ];

    /// The wire spelling (`ADMIN`, `OPERATOR`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "ADMIN",
            Role::Operator => "OPERATOR",
            Role::User => "USER",
            Role::Service => "SERVICE",
            Role::Viewer => "VIEWER",
            Role::Hub => "HUB",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing a role name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: use one of ADMIN, OPERATOR, USER, SERVICE, VIEWER")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    /// Case-insensitive; `readonly` (the original's name) is accepted for VIEWER.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "admin" => Ok(Role::Admin),
            "operator" => Ok(Role::Operator),
            "user" => Ok(Role::User),
            "service" => Ok(Role::Service),
            "viewer" | "readonly" => Ok(Role::Viewer),
            _ => Err(UnknownRole(s.to_string())),
        }
    }
}

/// The authenticated sender of a message, as stamped by the hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Identity {
    /// The user the key belongs to.
    pub user: String,
    /// The user's role.
    pub role: Role,
    /// The id of the key used (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

impl Identity {
    /// The identity the hub stamps on messages it originates itself.
    pub fn hub(hub_id: &str) -> Identity {
        Identity {
            user: hub_id.to_string(),
            role: Role::Hub,
            key_id: None,
        }
    }

    /// True for messages the hub originated.
    pub fn is_hub(&self) -> bool {
        self.role == Role::Hub
    }

    /// Whether this identity may read every workflow (not only its own).
    pub fn reads_all_workflows(&self) -> bool {
        matches!(
            self.role,
            Role::Admin | Role::Operator | Role::Viewer | Role::Hub
        )
    }

    /// Whether this identity may read the workflow owned by `owner`. Workflows stored
    /// before ownership existed (`owner` = `None`) are readable by the roles that read all.
    pub fn may_read(&self, owner: Option<&str>) -> bool {
        self.reads_all_workflows() || owner.is_some_and(|o| o == self.user)
    }

    /// Whether this identity may cancel the workflow owned by `owner`.
    pub fn may_cancel(&self, owner: Option<&str>) -> bool {
        match self.role {
            Role::Admin | Role::Operator | Role::Hub => true,
            Role::User => owner.is_some_and(|o| o == self.user),
            Role::Service | Role::Viewer => false,
        }
    }
}

/// `url` with any password (`user:password@`) replaced by `***`, and any query-string
/// parameter that looks like a secret (`key`, `token`, `password`, `secret`, `api_key`)
/// masked. Anything that is not a URL comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find(['/', '?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret_name(k) => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", masked.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Free text (an error message, a log line) with the password of every URL in it
/// replaced by `***` (`http://user:pw@host` → `http://user:***@host`).
pub fn redact_text(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | ')' | '"' | '\'' | ',' | '>')
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***@{host}")),
                None => out.push_str(&format!("***@{host}")),
            },
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Redacts secrets in a JSON document in place: every string holding a URL goes through
/// [`redact_url`] (or [`redact_text`] when it is more than a URL), and the value of every key that names a secret (`api_key`, `password`,
/// `token`, `authorization`, …) becomes `"***"`.
pub fn redact_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) if s.contains("://") => {
            *s = if s.contains(char::is_whitespace) {
                redact_text(s)
            } else {
                redact_url(s)
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret_name(k) && !v.is_null() && !matches!(v, Value::Bool(_)) {
                    *v = Value::String("***".into());
                } else {
                    redact_json(v);
                }
            }
        }
        _ => {}
    }
}

fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["key", "token", "password", "secret", "passwd", "auth"]
        .iter()
        .any(|s| n.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_case_insensitively_and_serialize_upper_case() {
        assert_eq!("viewer".parse::<Role>(), Ok(Role::Viewer));
        assert_eq!("readonly".parse::<Role>(), Ok(Role::Viewer));
        assert_eq!("ADMIN".parse::<Role>(), Ok(Role::Admin));
        assert!("hub".parse::<Role>().is_err());
        assert!("root".parse::<Role>().is_err());
        assert_eq!(
            serde_json::to_value(Role::Operator).ok(),
            Some(serde_json::json!("OPERATOR"))
        );
    }

    #[test]
    fn users_read_and_cancel_only_their_own_workflows() {
        let alice = Identity {
            user: "alice".into(),
            role: Role::User,
            key_id: None,
        };
        assert!(alice.may_read(Some("alice")));
        assert!(!alice.may_read(Some("bob")));
        assert!(!alice.may_read(None));
        assert!(alice.may_cancel(Some("alice")));
        assert!(!alice.may_cancel(Some("bob")));
        let viewer = Identity {
            role: Role::Viewer,
            ..alice.clone()
        };
        assert!(viewer.may_read(Some("bob")));
        assert!(!viewer.may_cancel(Some("bob")));
    }

    #[test]
    fn urls_inside_text_are_redacted() {
        assert_eq!(
            redact_text("error sending request for url (http://u:pw@h:1/api/tags): refused"),
            "error sending request for url (http://u:***@h:1/api/tags): refused"
        );
        assert_eq!(redact_text("no urls here"), "no urls here");
        assert_eq!(redact_text("a https://h/x b"), "a https://h/x b");
    }

    #[test]
    fn secrets_in_json_are_redacted() {
        let mut v = serde_json::json!({"endpoints": [{"url": "http://u:pw@h:1", "api_key": "sk-1", "healthy": true}], "has_api_key": true});
        redact_json(&mut v);
        assert_eq!(v["endpoints"][0]["url"], "http://u:***@h:1");
        assert_eq!(v["endpoints"][0]["api_key"], "***");
        assert_eq!(v["has_api_key"], true);
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redact_url("http://user:s3cret@gpu:11434/api"),
            "http://user:***@gpu:11434/api"
        );
        assert_eq!(redact_url("https://tok@h/x"), "https://***@h/x");
        assert_eq!(
            redact_url("http://h:1/v1?api_key=abc&model=m"),
            "http://h:1/v1?api_key=***&model=m"
        );
        assert_eq!(redact_url("http://h:1"), "http://h:1");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
