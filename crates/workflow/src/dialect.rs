//! The original Gleitzeit's task dialect, normalised at load: a task with `type:` and its
//! fields at the task's top level becomes a task of the native dialect (`method:` and
//! `parameters:`), so everything after parsing (validation, substitution, the services)
//! sees one form. `gz validate --explain` prints the result.
//!
//! | `type` | method | fields taken into `parameters` |
//! |---|---|---|
//! | `text` | `llm/chat` | `prompt` (and `system`) become `messages`; `model`, `temperature`, `max_tokens`, `stream`, `file_path`, `options`, `tags` |
//! | `vision` | `llm/vision` | `prompt`, `model`, `image_path`, `image_paths`, `images`, `temperature`, `max_tokens`, `options`, `tags` |
//! | `function` | `python/function` | `function_name`, `args`, `kwargs`, `service_name` |
//! | `python` | `python/execute` | `code`, `file`, `context`, `cwd` |
//! | `http` | `http/request` | `url`, `method` (the HTTP verb) or `http_method`, `headers`, `query`, `json`, `body`, `expected_status`, `response_type`, `max_bytes` |
//!
//! Fields given in `parameters:` as well are an error (the task would say two things).

use serde_json::{json, Map, Value};

/// The model of a `type: text` task that names none (and of `gz run --text`).
pub const DEFAULT_TEXT_MODEL: &str = "llama3.2:latest";

/// A task type of the dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Text,
    Vision,
    Function,
    Python,
    Http,
}

/// Every type, for hints.
pub(crate) const KINDS: &[&str] = &["text", "vision", "function", "python", "http"];

impl Kind {
    pub(crate) fn parse(name: &str) -> Option<Kind> {
        Some(match name {
            "text" | "llm" | "chat" => Kind::Text,
            "vision" => Kind::Vision,
            "function" => Kind::Function,
            "python" => Kind::Python,
            "http" => Kind::Http,
            _ => return None,
        })
    }

    /// The native method.
    pub(crate) fn method(self) -> &'static str {
        match self {
            Kind::Text => "llm/chat",
            Kind::Vision => "llm/vision",
            Kind::Function => "python/function",
            Kind::Python => "python/execute",
            Kind::Http => "http/request",
        }
    }

    /// The top-level task keys this type takes into its parameters.
    pub(crate) fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Text => &[
                "prompt",
                "system",
                "model",
                "temperature",
                "max_tokens",
                "stream",
                "file_path",
                "options",
                "tags",
                "provider",
            ],
            Kind::Vision => &[
                "prompt",
                "model",
                "image_path",
                "image_paths",
                "images",
                "temperature",
                "max_tokens",
                "options",
                "tags",
            ],
            Kind::Function => &["function_name", "args", "kwargs", "service_name"],
            Kind::Python => &["code", "file", "context", "cwd"],
            Kind::Http => &[
                "url",
                "http_method",
                "headers",
                "query",
                "json",
                "body",
                "expected_status",
                "response_type",
                "max_bytes",
                "secret_headers",
            ],
        }
    }
}

/// Every top-level key some type takes (so a task of the dialect does not get "unknown
/// key" for them).
pub(crate) fn is_field(key: &str) -> bool {
    KINDS
        .iter()
        .filter_map(|k| Kind::parse(k))
        .any(|k| k.fields().contains(&key))
}

/// The parameters of a task of `kind` from its top-level `fields` (already JSON), merged
/// with its explicit `parameters`. Errors name the clashing key.
pub(crate) fn parameters(
    kind: Kind,
    mut fields: Map<String, Value>,
    explicit: &Value,
) -> Result<Value, String> {
    let mut params = Map::new();
    match kind {
        Kind::Text => {
            let mut messages = Vec::new();
            if let Some(system) = fields.remove("system") {
                messages.push(json!({ "role": "system", "content": system }));
            }
            if let Some(prompt) = fields.remove("prompt") {
                messages.push(json!({ "role": "user", "content": prompt }));
            }
            if !messages.is_empty() {
                params.insert("messages".into(), Value::Array(messages));
            }
            if !fields.contains_key("model") && explicit.get("model").is_none() {
                params.insert("model".into(), json!(DEFAULT_TEXT_MODEL));
            }
        }
        Kind::Http => {
            if let Some(verb) = fields.remove("http_method") {
                params.insert("method".into(), verb);
            }
        }
        Kind::Vision | Kind::Function | Kind::Python => {}
    }
    params.extend(fields);
    if let Value::Object(given) = explicit {
        for (key, value) in given {
            if params.contains_key(key) {
                return Err(key.clone());
            }
            params.insert(key.clone(), value.clone());
        }
    }
    Ok(Value::Object(params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn each_type_becomes_its_method_and_parameters() {
        let p = parameters(
            Kind::Text,
            fields(json!({"prompt": "hi {{A.result}}", "system": "be brief", "model": "m"})),
            &json!({}),
        )
        .expect("ok");
        assert_eq!(
            p,
            json!({"model": "m", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi {{A.result}}"}]})
        );
        let p = parameters(Kind::Text, fields(json!({"prompt": "x"})), &json!({})).expect("ok");
        assert_eq!(p["model"], DEFAULT_TEXT_MODEL);
        let p = parameters(
            Kind::Http,
            fields(json!({"url": "http://h", "http_method": "POST"})),
            &json!({"headers": {"a": "b"}}),
        )
        .expect("ok");
        assert_eq!(
            p,
            json!({"url": "http://h", "method": "POST", "headers": {"a": "b"}})
        );
        let clash = parameters(
            Kind::Function,
            fields(json!({"function_name": "f"})),
            &json!({"function_name": "g"}),
        );
        assert_eq!(clash, Err("function_name".to_string()));
        assert_eq!(Kind::parse("vision").map(Kind::method), Some("llm/vision"));
        assert!(is_field("kwargs") && !is_field("colour"));
    }
}
