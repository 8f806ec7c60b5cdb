//! A task's parameters (`protocols/http.yaml`) read into an [`HttpRequest`], checked again
//! here: the workflow validator saw them before substitution, and any client may send a task.
//! Mistakes are GZ7002 (shape) or GZ7011 (a number beyond the provider's limits), with the
//! parameter's name.

use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::limits::{duration_from_secs, out_of_range};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde_json::{Map, Value};

use crate::secrets::SecretRef;

/// The provider's bounds on what a task may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Timeout of tasks that name none.
    pub default_timeout: Duration,
    /// Longest `timeout` a task may ask for.
    pub max_timeout: Duration,
    /// Largest body accepted, and the default `max_bytes`.
    pub max_bytes: u64,
}

/// What the body of the request is.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// None.
    Empty,
    /// `json`: serialized, `content-type: application/json` unless given.
    Json(Value),
    /// `body`: sent as is, `content-type: text/plain; charset=utf-8` unless given.
    Text(String),
}

/// Which statuses count as success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// 200 to 299 (the default).
    AnySuccess,
    /// These.
    Only(Vec<u16>),
}

impl Expected {
    /// Whether `status` counts as success.
    pub fn accepts(&self, status: u16) -> bool {
        match self {
            Expected::AnySuccess => (200..300).contains(&status),
            Expected::Only(list) => list.contains(&status),
        }
    }
}

/// How the response body becomes the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseType {
    /// JSON when the content type says so (and it parses), else text.
    Auto,
    /// Must be JSON (GZ6004 otherwise).
    Json,
    /// Text (invalid UTF-8 replaced by U+FFFD).
    Text,
}

/// One request, ready to send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    /// Verb.
    pub method: Method,
    /// URL with the `query` parameters appended.
    pub url: Url,
    /// Plain headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Headers whose values come from the provider's environment.
    pub secret_headers: Vec<(HeaderName, SecretRef)>,
    /// Body.
    pub body: Body,
    /// Time for the whole request, body included.
    pub timeout: Duration,
    /// Statuses that count as success.
    pub expected: Expected,
    /// How to read the body.
    pub response_type: ResponseType,
    /// Largest body accepted.
    pub max_bytes: u64,
}

fn bad(message: impl Into<String>) -> GzError {
    GzError::new(ErrorCode::SchemaViolation, message)
}

fn object<'a>(params: &'a Value, key: &str) -> Result<Option<&'a Map<String, Value>>, GzError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(bad(format!("`{key}` must be an object"))),
    }
}

fn header_name(key: &str, name: &str) -> Result<HeaderName, GzError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| bad(format!("`{key}`: {name:?} is not a valid header name")))
}

fn query_text(key: &str, value: &Value) -> Result<String, GzError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(bad(format!(
            "`query.{key}` must be a string, number, boolean or a list of them"
        ))),
    }
}

fn parse_url(params: &Value) -> Result<Url, GzError> {
    let text = params
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`url` is required (an http:// or https:// URL)"))?;
    let mut url = Url::parse(text).map_err(|e| bad(format!("`url` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(bad("`url` must be an http:// or https:// URL with a host"));
    }
    if let Some(query) = object(params, "query")? {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in query {
            match v {
                Value::Array(items) => {
                    for item in items {
                        pairs.append_pair(k, &query_text(k, item)?);
                    }
                }
                one => {
                    pairs.append_pair(k, &query_text(k, one)?);
                }
            }
        }
    }
    Ok(url)
}

fn parse_expected(params: &Value) -> Result<Expected, GzError> {
    let status = |v: &Value| {
        v.as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (100..=599).contains(s))
            .ok_or_else(|| bad("`expected_status` must be a status (100 to 599) or a list of them"))
    };
    match params.get("expected_status") {
        None | Some(Value::Null) => Ok(Expected::AnySuccess),
        Some(Value::Array(items)) if !items.is_empty() => Ok(Expected::Only(
            items.iter().map(status).collect::<Result<_, _>>()?,
        )),
        Some(one) => Ok(Expected::Only(vec![status(one)?])),
    }
}

impl HttpRequest {
    /// Reads a task's parameters within the provider's `limits`; `task_timeout` (the task's
    /// own `timeout`, if any) bounds the request too.
    ///
    /// # Errors
    ///
    /// GZ7002 for a parameter of the wrong shape, GZ7011 for a timeout or size beyond the
    /// limits.
    pub fn from_params(
        params: &Value,
        limits: &Limits,
        task_timeout: Option<Duration>,
    ) -> Result<HttpRequest, GzError> {
        if !params.is_object() {
            return Err(bad("the parameters of http/request must be an object"));
        }
        let method = match params.get("method").and_then(Value::as_str) {
            None => Method::GET,
            Some(m) => match m.to_ascii_uppercase().as_str() {
                "GET" => Method::GET,
                "POST" => Method::POST,
                "PUT" => Method::PUT,
                "PATCH" => Method::PATCH,
                "DELETE" => Method::DELETE,
                "HEAD" => Method::HEAD,
                other => {
                    return Err(bad(format!(
                        "`method` {other:?} is not one of GET, POST, PUT, PATCH, DELETE, HEAD"
                    )))
                }
            },
        };
        let url = parse_url(params)?;
        let mut headers = Vec::new();
        for (name, value) in object(params, "headers")?.into_iter().flatten() {
            let value = value
                .as_str()
                .ok_or_else(|| bad(format!("`headers.{name}` must be a string")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| bad(format!("`headers.{name}` is not a valid header value")))?;
            headers.push((header_name("headers", name)?, value));
        }
        let mut secret_headers = Vec::new();
        for (name, value) in object(params, "secret_headers")?.into_iter().flatten() {
            let secret = value.as_str().and_then(SecretRef::parse).ok_or_else(|| {
                bad(format!(
                    "`secret_headers.{name}` must name an environment variable (`NAME` or `Prefix NAME`)"
                ))
            })?;
            let name = header_name("secret_headers", name)?;
            if headers.iter().any(|(h, _)| *h == name) {
                return Err(bad(format!(
                    "header {name} is in both `headers` and `secret_headers`"
                )));
            }
            secret_headers.push((name, secret));
        }
        let body = match (params.get("json"), params.get("body")) {
            (Some(_), Some(_)) => return Err(bad("give `json` or `body`, not both")),
            (Some(json), None) => Body::Json(json.clone()),
            (None, Some(Value::String(text))) => Body::Text(text.clone()),
            (None, Some(_)) => return Err(bad("`body` must be a string (use `json` for JSON)")),
            (None, None) => Body::Empty,
        };
        let max_timeout = limits.max_timeout;
        let mut timeout = match params.get("timeout") {
            None | Some(Value::Null) => limits.default_timeout.min(max_timeout),
            Some(v) => v
                .as_f64()
                .and_then(|s| duration_from_secs(s, max_timeout))
                .ok_or_else(|| {
                    out_of_range(
                        "timeout",
                        v,
                        &format!(
                            "more than 0 and at most {} seconds",
                            max_timeout.as_secs_f64()
                        ),
                    )
                })?,
        };
        if let Some(t) = task_timeout {
            timeout = timeout.min(t);
        }
        let response_type = match params.get("response_type").and_then(Value::as_str) {
            None | Some("auto") => ResponseType::Auto,
            Some("json") => ResponseType::Json,
            Some("text") => ResponseType::Text,
            Some(other) => {
                return Err(bad(format!(
                    "`response_type` {other:?} is not one of auto, json, text"
                )))
            }
        };
        let max_bytes = match params.get("max_bytes") {
            None | Some(Value::Null) => limits.max_bytes,
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=limits.max_bytes).contains(n))
                .ok_or_else(|| {
                    out_of_range("max_bytes", v, &format!("from 1 to {}", limits.max_bytes))
                })?,
        };
        Ok(HttpRequest {
            method,
            url,
            headers,
            secret_headers,
            body,
            timeout,
            expected: parse_expected(params)?,
            response_type,
            max_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    const LIMITS: Limits = Limits {
        default_timeout: Duration::from_secs(30),
        max_timeout: Duration::from_secs(300),
        max_bytes: 1000,
    };

    fn read(params: Value) -> Result<HttpRequest, GzError> {
        HttpRequest::from_params(&params, &LIMITS, None)
    }

    #[test]
    fn defaults_and_query_parameters() {
        let r = read(
            json!({"url": "http://h:8/p?x=1", "query": {"a": "b c", "n": 2, "t": [true, "z"]}}),
        )
        .unwrap();
        assert_eq!(r.method, Method::GET);
        assert_eq!(r.url.as_str(), "http://h:8/p?x=1&a=b+c&n=2&t=true&t=z");
        assert_eq!(r.timeout, Duration::from_secs(30));
        assert_eq!(r.max_bytes, 1000);
        assert_eq!(r.expected, Expected::AnySuccess);
        assert_eq!(r.response_type, ResponseType::Auto);
        assert_eq!(r.body, Body::Empty);
    }

    #[test]
    fn bodies_headers_and_secrets() {
        let r = read(json!({"url": "https://h/", "method": "post", "json": {"a": 1},
            "headers": {"X-One": "1"}, "secret_headers": {"Authorization": "Bearer TOKEN"},
            "expected_status": [200, 409], "response_type": "json", "max_bytes": 10, "timeout": 2.5}))
        .unwrap();
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.body, Body::Json(json!({"a": 1})));
        assert_eq!(r.headers[0].0.as_str(), "x-one");
        assert_eq!(r.secret_headers[0].1.var, "TOKEN");
        assert!(r.expected.accepts(409) && !r.expected.accepts(201));
        assert_eq!(r.timeout, Duration::from_millis(2500));
        let text =
            read(json!({"url": "http://h/", "body": "raw", "expected_status": 204})).unwrap();
        assert_eq!(text.body, Body::Text("raw".into()));
        assert_eq!(text.expected, Expected::Only(vec![204]));
    }

    #[test]
    fn the_task_timeout_bounds_the_request() {
        let r = HttpRequest::from_params(
            &json!({"url": "http://h/", "timeout": 60}),
            &LIMITS,
            Some(Duration::from_secs(5)),
        )
        .unwrap();
        assert_eq!(r.timeout, Duration::from_secs(5));
    }

    #[test]
    fn mistakes_are_coded_errors_naming_the_parameter() {
        let code = |p: Value| read(p).unwrap_err().code;
        assert_eq!(code(json!({"url": "ftp://h/x"})), "GZ7002");
        assert_eq!(code(json!({"url": "not a url"})), "GZ7002");
        assert_eq!(
            code(json!({"url": "http://h/", "json": 1, "body": "b"})),
            "GZ7002"
        );
        assert_eq!(
            code(json!({"url": "http://h/", "method": "TRACE"})),
            "GZ7002"
        );
        assert_eq!(
            code(json!({"url": "http://h/", "headers": {"bad name": "v"}})),
            "GZ7002"
        );
        assert_eq!(
            code(json!({"url": "http://h/", "headers": {"X": "a\nb"}})),
            "GZ7002"
        );
        assert_eq!(
            code(json!({"url": "http://h/", "secret_headers": {"X": "not-a-var"}})),
            "GZ7002"
        );
        assert_eq!(
            code(
                json!({"url": "http://h/", "headers": {"X-K": "1"}, "secret_headers": {"x-k": "K"}})
            ),
            "GZ7002"
        );
        assert_eq!(
            code(json!({"url": "http://h/", "expected_status": 42})),
            "GZ7002"
        );
        assert_eq!(code(json!({"url": "http://h/", "timeout": 301})), "GZ7011");
        assert_eq!(code(json!({"url": "http://h/", "timeout": -1})), "GZ7011");
        assert_eq!(
            code(json!({"url": "http://h/", "max_bytes": 1001})),
            "GZ7011"
        );
        assert_eq!(code(json!("http://h/")), "GZ7002");
    }
}
