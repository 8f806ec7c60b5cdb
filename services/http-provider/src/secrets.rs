//! Secrets of HTTP tasks: a task names an environment variable of the provider process
//! (`secret_headers: {Authorization: "Bearer API_TOKEN"}`), never its value, so the value is
//! in no workflow record. The operator says which variables tasks may name (`--secret-env`);
//! `GLEITZEIT_*` variables (the suite's own settings and keys) never.
//!
//! The values are read when the request is made, sent as sensitive headers, and replaced by
//! `[redacted]` wherever they would come back: in the result (a server that echoes headers),
//! in error messages, in logs.

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use serde_json::Value;

/// What replaces a secret's value.
pub const REDACTED: &str = "[redacted]";

/// Variables tasks may never name.
const RESERVED_PREFIX: &str = "GLEITZEIT_";

/// A header value made of a literal prefix and a variable: `Bearer API_TOKEN` is the prefix
/// `Bearer ` and the variable `API_TOKEN`; `API_TOKEN` alone has no prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Sent before the value, as written (including its trailing space).
    pub prefix: String,
    /// The variable's name.
    pub var: String,
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl SecretRef {
    /// Reads `[prefix ]NAME`: the last space-separated word is the variable.
    pub fn parse(text: &str) -> Option<SecretRef> {
        let (prefix, var) = match text.rsplit_once(' ') {
            Some((before, var)) => (format!("{before} "), var),
            None => (String::new(), text),
        };
        is_var_name(var).then(|| SecretRef {
            prefix,
            var: var.to_string(),
        })
    }
}

/// A `--secret-env` entry that is not a variable name (or a name prefix ending in `*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--secret-env entry {0:?} is not a variable name (letters, digits, `_`; a trailing `*` for a prefix)")]
pub struct SecretListError(pub String);

/// The variables tasks may name: exact names, or prefixes written `NAME_*`.
#[derive(Debug, Clone, Default)]
pub struct SecretPolicy {
    allowed: Vec<String>,
}

impl SecretPolicy {
    /// The policy of a `--secret-env` list.
    ///
    /// # Errors
    ///
    /// The first entry that is not a name or a prefix.
    pub fn new(list: &[String]) -> Result<SecretPolicy, SecretListError> {
        let mut allowed = Vec::new();
        for entry in list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let every = entry == "*";
            let name = entry.strip_suffix('*').unwrap_or(entry);
            if !every && !is_var_name(name) {
                return Err(SecretListError(entry.to_string()));
            }
            allowed.push(entry.to_string());
        }
        Ok(SecretPolicy { allowed })
    }

    /// Whether tasks may name `var`.
    pub fn permits(&self, var: &str) -> bool {
        !var.starts_with(RESERVED_PREFIX)
            && self.allowed.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => var.starts_with(prefix),
                None => p == var,
            })
    }

    /// The list as given, for the provider's metadata (names only).
    pub fn names(&self) -> &[String] {
        &self.allowed
    }

    /// The value of `secret`'s variable (without the prefix) for the header `header`, looked
    /// up with `lookup` (the process environment in the provider). Errors never hold it.
    ///
    /// # Errors
    ///
    /// GZ2023 when the variable may not be named; GZ7001 when it is unset or empty.
    pub fn value(
        &self,
        header: &str,
        secret: &SecretRef,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<String, GzError> {
        let var = &secret.var;
        if !self.permits(var) {
            return Err(GzError::new(
                ErrorCode::SecurityViolation,
                format!("secret_headers.{header}: the variable {var} is not one tasks may use"),
            )
            .with_hint(
                "the operator lists the variables tasks may name with the http-provider's --secret-env (GLEITZEIT_HTTP_SECRET_ENV); GLEITZEIT_* never",
            ));
        }
        match lookup(var).filter(|v| !v.is_empty()) {
            Some(value) => Ok(value),
            None => Err(GzError::new(
                ErrorCode::InvalidField,
                format!("secret_headers.{header}: the variable {var} is not set in the http-provider's environment"),
            )
            .with_hint("set it where the http-provider runs, then run the task again")),
        }
    }
}

/// Replaces secret values in what goes back to the task's owner.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    /// Longest first, so a secret containing another is replaced whole.
    values: Vec<String>,
}

impl Redactor {
    /// A redactor of these values (empty ones are ignored).
    pub fn new(values: impl IntoIterator<Item = String>) -> Redactor {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Redactor { values }
    }

    /// `text` with every secret value replaced.
    pub fn text(&self, text: &str) -> String {
        self.values.iter().fold(text.to_string(), |t, secret| {
            t.replace(secret.as_str(), REDACTED)
        })
    }

    /// `value` with every secret value replaced in its strings and keys.
    pub fn json(&self, value: Value) -> Value {
        if self.values.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.text(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (self.text(&k), self.json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn policy(list: &[&str]) -> SecretPolicy {
        SecretPolicy::new(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_reference_is_an_optional_prefix_and_a_variable() {
        assert_eq!(
            SecretRef::parse("Bearer API_TOKEN"),
            Some(SecretRef {
                prefix: "Bearer ".into(),
                var: "API_TOKEN".into()
            })
        );
        assert_eq!(SecretRef::parse("KEY").unwrap().prefix, "");
        assert_eq!(
            SecretRef::parse("Token  a b _K9").unwrap().prefix,
            "Token  a b "
        );
        assert!(SecretRef::parse("Bearer abc-123").is_none());
        assert!(SecretRef::parse("9LIVES").is_none());
        assert!(SecretRef::parse("").is_none());
    }

    #[test]
    fn only_listed_variables_and_never_the_suites_own() {
        let p = policy(&["API_TOKEN", "HTTP_SECRET_*"]);
        assert!(p.permits("API_TOKEN"));
        assert!(p.permits("HTTP_SECRET_GITHUB"));
        assert!(!p.permits("AWS_SECRET_ACCESS_KEY"));
        assert!(!policy(&["*"]).permits("GLEITZEIT_API_KEY"));
        assert!(policy(&["*"]).permits("ANYTHING"));
        assert!(!SecretPolicy::default().permits("API_TOKEN"));
        assert!(SecretPolicy::new(&["bad-name".to_string()]).is_err());
    }

    #[test]
    fn values_come_from_the_lookup_and_errors_do_not_hold_them() {
        let p = policy(&["API_TOKEN", "EMPTY"]);
        let lookup = |v: &str| match v {
            "API_TOKEN" => Some("s3cr3t".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let r = SecretRef::parse("Bearer API_TOKEN").unwrap();
        assert_eq!(p.value("Authorization", &r, lookup).unwrap(), "s3cr3t");
        let unset = p
            .value("X", &SecretRef::parse("EMPTY").unwrap(), lookup)
            .unwrap_err();
        assert_eq!(unset.code, "GZ7001");
        let refused = p
            .value("X", &SecretRef::parse("HOME").unwrap(), lookup)
            .unwrap_err();
        assert_eq!(refused.code, "GZ2023");
        assert!(!refused.render().contains("s3cr3t"));
    }

    #[test]
    fn redaction_reaches_nested_strings_and_keys() {
        let r = Redactor::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        assert_eq!(r.text("x abcdef y abc"), "x [redacted] y [redacted]");
        let v = r.json(json!({"h": {"authorization": "Bearer abcdef"}, "abc": [1, "zabc"]}));
        assert_eq!(
            v,
            json!({"h": {"authorization": "Bearer [redacted]"}, "[redacted]": [1, "z[redacted]"]})
        );
        assert_eq!(Redactor::default().text("abc"), "abc");
    }
}
