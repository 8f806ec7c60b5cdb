//! Sending one [`HttpRequest`] and turning the answer into the task's result, or into a coded
//! error the queue-manager knows how to treat:
//!
//! | what happened | code | retryable |
//! |---|---|---|
//! | no complete answer within the timeout | GZ2002 | yes |
//! | connection refused, DNS or TLS failure, connection broken mid-body | GZ6001 | yes |
//! | status not expected: 5xx, 429, 408 | GZ6002 | yes |
//! | status not expected: any other (4xx, 3xx not followed) | GZ6003 | no |
//! | `response_type: json` and the body is not JSON | GZ6004 | no |
//! | body beyond `max_bytes` | GZ2026 | no |
//! | host or redirect target refused by the operator's rules | GZ2023 | no |
//!
//! Redirects are followed (at most [`MAX_REDIRECTS`]), each target checked like the first URL;
//! a request carrying secret headers follows them only within its origin (scheme, host and
//! port), so a secret never travels to a host the task did not name.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::identity::{redact_text, redact_url};
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Map, Value};
use tracing::debug;

use crate::hosts::{HostPolicy, PolicyResolver, Refusal};
use crate::request::{Body, HttpRequest, ResponseType};
use crate::secrets::{Redactor, SecretPolicy};

/// Redirects followed at most.
pub const MAX_REDIRECTS: usize = 10;
/// Bytes of an unexpected answer's body kept for the error message.
const EXCERPT_BYTES: usize = 500;

/// The HTTP clients and the rules they follow.
pub struct Client {
    /// Follows redirects to any allowed host.
    plain: reqwest::Client,
    /// Follows redirects within the origin only (requests with secret headers).
    same_origin: reqwest::Client,
    policy: Arc<HostPolicy>,
    secrets: SecretPolicy,
}

fn build(
    policy: &Arc<HostPolicy>,
    same_origin_only: bool,
) -> Result<reqwest::Client, reqwest::Error> {
    let rules = policy.clone();
    let redirect = reqwest::redirect::Policy::custom(move |attempt| {
        // `previous` starts with the first URL, which was no redirect.
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        let next = attempt.url();
        if same_origin_only
            && attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() != next.origin())
        {
            return attempt.stop();
        }
        let checked = match next.host_str() {
            Some(host) if matches!(next.scheme(), "http" | "https") => rules.check_host(host),
            _ => Err(Refusal {
                host: redact_url(next.as_str()),
                reason: "a redirect may only lead to an http:// or https:// URL",
            }),
        };
        match checked {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    });
    reqwest::Client::builder()
        .dns_resolver(Arc::new(PolicyResolver(policy.clone())))
        .redirect(redirect)
        .user_agent(concat!(
            "gleitzeit-http-provider/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
}

impl Client {
    /// Clients following `policy`, with secrets from the variables `secrets` allows.
    ///
    /// # Errors
    ///
    /// The HTTP client could not be built (TLS roots).
    pub fn new(policy: HostPolicy, secrets: SecretPolicy) -> Result<Client, reqwest::Error> {
        let policy = Arc::new(policy);
        Ok(Client {
            plain: build(&policy, false)?,
            same_origin: build(&policy, true)?,
            policy,
            secrets,
        })
    }

    /// The host rules.
    pub fn policy(&self) -> &HostPolicy {
        &self.policy
    }

    /// The secret rules.
    pub fn secrets(&self) -> &SecretPolicy {
        &self.secrets
    }

    /// Sends `req`; its result, or the coded error.
    pub async fn execute(&self, req: HttpRequest) -> Result<Value, GzError> {
        let shown_url = redact_url(req.url.as_str());
        if let Some(host) = req.url.host_str() {
            self.policy.check_host(host).map_err(refused)?;
        }
        let client = if req.secret_headers.is_empty() {
            &self.plain
        } else {
            &self.same_origin
        };
        let mut rb = client.request(req.method.clone(), req.url.clone());
        for (name, value) in &req.headers {
            rb = rb.header(name, value);
        }
        let mut values = Vec::new();
        for (name, secret) in &req.secret_headers {
            let value = self
                .secrets
                .value(name.as_str(), secret, |var| std::env::var(var).ok())?;
            let mut header =
                HeaderValue::from_str(&format!("{}{value}", secret.prefix)).map_err(|_| {
                    GzError::new(
                        ErrorCode::InvalidField,
                        format!(
                            "secret_headers.{name}: the value of {} is not a valid header value",
                            secret.var
                        ),
                    )
                })?;
            header.set_sensitive(true);
            rb = rb.header(name, header);
            values.push(value);
        }
        let redactor = Redactor::new(values);
        let has_type = req.headers.iter().any(|(h, _)| *h == CONTENT_TYPE);
        rb = match &req.body {
            Body::Empty => rb,
            Body::Json(v) if has_type => rb.body(v.to_string()),
            Body::Json(v) => rb.json(v),
            Body::Text(t) if has_type => rb.body(t.clone()),
            Body::Text(t) => rb
                .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(t.clone()),
        };
        debug!(method = %req.method, url = %shown_url, timeout = ?req.timeout, "sending");
        let limit = req.timeout;
        match tokio::time::timeout(limit, exchange(rb, &req, &redactor)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(timed_out(&shown_url, limit)),
        }
    }
}

fn timed_out(url: &str, limit: Duration) -> GzError {
    GzError::new(
        ErrorCode::TaskTimeout,
        format!(
            "no complete answer from {url} within {:.1}s",
            limit.as_secs_f64()
        ),
    )
    .with_hint("raise the task's `timeout` (at most the http-provider's --max-timeout), or make the server faster; a `retry:` policy runs the task again")
}

fn refused(refusal: Refusal) -> GzError {
    GzError::new(ErrorCode::SecurityViolation, refusal.to_string()).with_hint(
        "the operator's http-provider rules (--allow-hosts, --deny-hosts, --allow-link-local) refuse this host",
    )
}

/// The host refusal somewhere in an error's chain of causes.
fn refusal_in(e: &reqwest::Error) -> Option<Refusal> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(r) = c.downcast_ref::<Refusal>() {
            return Some(r.clone());
        }
        cause = c.source();
    }
    None
}

/// An error and its causes in one line (reqwest's own message names only the URL).
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn send_failed(e: &reqwest::Error, url: &str, limit: Duration, redactor: &Redactor) -> GzError {
    if let Some(refusal) = refusal_in(e) {
        return refused(refusal);
    }
    if e.is_timeout() {
        return timed_out(url, limit);
    }
    let message = redactor.text(&redact_text(&chain(e)));
    if e.is_redirect() {
        return GzError::new(ErrorCode::HttpStatus, message);
    }
    GzError::new(ErrorCode::HttpUnreachable, message)
}

/// The response headers as a JSON object: names in lower case, repeated ones joined.
fn headers_of(headers: &HeaderMap, redactor: &Redactor) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in headers {
        let value = redactor.text(&String::from_utf8_lossy(value.as_bytes()));
        match out.get_mut(name.as_str()) {
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&value);
            }
            _ => {
                out.insert(name.as_str().to_string(), Value::String(value));
            }
        }
    }
    out
}

/// Why the body could not be read whole.
enum BodyError {
    TooLarge,
    Broken(reqwest::Error),
}

/// Reads the body, failing as soon as it grows beyond `max` bytes.
async fn read_body(resp: &mut Response, max: u64) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Broken)? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The start of a body, as text, for error messages.
async fn excerpt(resp: &mut Response) -> String {
    let mut body = Vec::new();
    while body.len() < EXCERPT_BYTES {
        match resp.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    text.chars().take(EXCERPT_BYTES).collect()
}

fn status_error(status: u16, url: &str, body: &str) -> GzError {
    let code = if status >= 500 || status == 429 || status == 408 {
        ErrorCode::HttpServerError
    } else {
        ErrorCode::HttpStatus
    };
    let shown = if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    };
    GzError::new(code, format!("HTTP {status} from {url}{shown}"))
        .with_details(json!({ "status": status, "url": url, "body_excerpt": body }))
}

fn is_json_type(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            let essence = t.split(';').next().unwrap_or_default().trim();
            essence == "application/json" || essence.ends_with("+json")
        })
}

/// Sends the request and reads the whole answer.
async fn exchange(
    rb: RequestBuilder,
    req: &HttpRequest,
    redactor: &Redactor,
) -> Result<Value, GzError> {
    let started = Instant::now();
    let shown_url = redact_url(req.url.as_str());
    let mut resp = rb
        .send()
        .await
        .map_err(|e| send_failed(&e, &shown_url, req.timeout, redactor))?;
    let status = resp.status().as_u16();
    let url = redactor.text(&redact_url(resp.url().as_str()));
    if !req.expected.accepts(status) {
        let body = redactor.text(&excerpt(&mut resp).await);
        debug!(status, url = %url, "unexpected status");
        return Err(status_error(status, &url, &body));
    }
    let json_type = is_json_type(resp.headers());
    let headers = headers_of(resp.headers(), redactor);
    let body = if req.method == Method::HEAD {
        Vec::new()
    } else {
        read_body(&mut resp, req.max_bytes).await.map_err(|e| match e {
            BodyError::TooLarge => GzError::new(
                ErrorCode::OutputTooLarge,
                format!(
                    "the response body from {url} is larger than max_bytes ({} bytes)",
                    req.max_bytes
                ),
            )
            .with_hint("raise the task's `max_bytes` (at most the http-provider's --max-bytes), or ask the server for less")
            .with_details(json!({ "status": status, "limit_bytes": req.max_bytes })),
            BodyError::Broken(e) => GzError::new(
                ErrorCode::HttpUnreachable,
                format!("the body from {url} broke off: {}", redactor.text(&chain(&e))),
            ),
        })?
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let parsed = match req.response_type {
        ResponseType::Text => None,
        ResponseType::Auto if !json_type || body.is_empty() => None,
        ResponseType::Auto => serde_json::from_slice::<Value>(&body).ok(),
        ResponseType::Json => Some(serde_json::from_slice::<Value>(&body).map_err(|e| {
            let start: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            GzError::new(
                ErrorCode::HttpBadResponse,
                format!(
                    "the body from {url} is not JSON ({e}); it starts: {}",
                    redactor.text(&start)
                ),
            )
            .with_details(json!({
                "status": status,
                "content_type": headers.get("content-type").cloned().unwrap_or(Value::Null),
            }))
        })?),
    };
    let mut result = json!({
        "status": status,
        "headers": headers,
        "elapsed_ms": elapsed_ms,
        "url": url,
    });
    match parsed {
        Some(v) => result["json"] = redactor.json(v),
        None => result["body"] = json!(redactor.text(&String::from_utf8_lossy(&body))),
    }
    debug!(status, url = %url, bytes = body.len(), elapsed_ms, "answered");
    Ok(result)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn server_failures_are_retryable_and_refusals_are_not() {
        for status in [500, 502, 503, 429, 408] {
            let e = status_error(status, "http://h/", "busy");
            assert_eq!(e.code, "GZ6002", "{status}");
            assert!(e.retryable);
        }
        for status in [400, 401, 404, 302] {
            let e = status_error(status, "http://h/", "");
            assert_eq!(e.code, "GZ6003", "{status}");
            assert!(!e.retryable);
            assert_eq!(e.message, format!("HTTP {status} from http://h/"));
        }
        assert_eq!(
            status_error(404, "u", "gone").details.unwrap()["body_excerpt"],
            "gone"
        );
    }

    #[test]
    fn json_content_types_are_recognised() {
        let with = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
            is_json_type(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/problem+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/jsonp"));
        assert!(!is_json_type(&HeaderMap::new()));
    }

    #[test]
    fn repeated_headers_are_joined_and_secrets_redacted() {
        let mut h = HeaderMap::new();
        h.append("set-cookie", HeaderValue::from_static("a=1"));
        h.append("set-cookie", HeaderValue::from_static("b=2"));
        h.insert("x-echo", HeaderValue::from_static("Bearer tok"));
        let out = headers_of(&h, &Redactor::new(["tok".to_string()]));
        assert_eq!(out["set-cookie"], "a=1, b=2");
        assert_eq!(out["x-echo"], "Bearer [redacted]");
    }
}
