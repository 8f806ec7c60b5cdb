//! Plain HTTP endpoints for testing `http/request` tasks (no LLM involved):
//!
//! | route | answer |
//! |---|---|
//! | any method `/http/echo` | `{method, path, query, headers, body, json}` of the request (header names in lower case; `json` is the body parsed, or null) |
//! | `GET /http/text` | `text/plain` that is not JSON |
//! | `GET /http/big?bytes=N[&chunked=true]` | N bytes of `x` (at most 256 MiB); chunked without a length when asked |
//! | `GET /http/slow?ms=N` | `{"slept_ms": N}` after N milliseconds (at most a minute) |
//! | any method `/http/flaky?key=K&fail=N[&status=S]` | the first N calls with key K answer S (default 500), later ones `{"key", "call"}` |
//! | any method `/http/status/{code}` | that status with `{"status": code}` |
//! | any method `/http/redirect?to=URL` | 302 to `URL` |
//!
//! With `--api-key` these need the bearer token like every API route.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::state::Sim;

/// The largest body `/http/big` makes.
const MAX_BIG: u64 = 256 << 20;
/// The longest pause `/http/slow` takes.
const MAX_SLOW_MS: u64 = 60_000;

type Params = Query<HashMap<String, String>>;

fn number(query: &HashMap<String, String>, key: &str) -> Option<u64> {
    query.get(key).and_then(|v| v.parse().ok())
}

fn refused(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))).into_response()
}

/// `/http/echo`: the request as the server saw it.
pub async fn echo(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    query: Params,
    body: Bytes,
) -> Json<Value> {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let query: BTreeMap<String, String> = query.0.into_iter().collect();
    Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": query,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "json": serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
    }))
}

/// `GET /http/text`.
pub async fn text() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "plain text, not JSON\n",
    )
        .into_response()
}

/// `GET /http/big?bytes=N[&chunked=true]`.
pub async fn big(query: Params) -> Response {
    let Some(n) = number(&query, "bytes").filter(|n| *n <= MAX_BIG) else {
        return refused("give bytes=N, at most 256 MiB");
    };
    let headers = [(header::CONTENT_TYPE, "text/plain")];
    if query.get("chunked").map(String::as_str) != Some("true") {
        let size = usize::try_from(n).unwrap_or(usize::MAX);
        return (headers, vec![b'x'; size]).into_response();
    }
    const CHUNK: u64 = 64 << 10;
    let chunks = (0..n.div_ceil(CHUNK)).map(move |i| {
        let len = CHUNK.min(n - i * CHUNK);
        Ok::<_, Infallible>(Bytes::from(vec![b'x'; len as usize]))
    });
    (
        headers,
        Body::from_stream(futures_util::stream::iter(chunks)),
    )
        .into_response()
}

/// `GET /http/slow?ms=N`.
pub async fn slow(query: Params) -> Response {
    let Some(ms) = number(&query, "ms").filter(|ms| *ms <= MAX_SLOW_MS) else {
        return refused("give ms=N, at most 60000");
    };
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(json!({ "slept_ms": ms })).into_response()
}

/// `/http/flaky?key=K&fail=N[&status=S]`.
pub async fn flaky(State(sim): State<Arc<Sim>>, query: Params) -> Response {
    let Some(key) = query.get("key") else {
        return refused("give key=K");
    };
    let fail = number(&query, "fail").unwrap_or(1);
    let status = number(&query, "status")
        .and_then(|s| u16::try_from(s).ok())
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let call = sim.nth_call(key);
    if call <= fail {
        tracing::debug!(%key, call, "flaky call fails");
        return (status, Json(json!({ "error": "flaky", "call": call }))).into_response();
    }
    Json(json!({ "key": key, "call": call })).into_response()
}

/// `/http/redirect?to=URL`.
pub async fn redirect(query: Params) -> Response {
    match query.get("to") {
        Some(to) => (StatusCode::FOUND, [(header::LOCATION, to.as_str())]).into_response(),
        None => refused("give to=URL"),
    }
}

/// `/http/status/{code}`.
pub async fn status(Path(code): Path<u16>) -> Response {
    match StatusCode::from_u16(code) {
        Ok(s) if code >= 200 => (s, Json(json!({ "status": code }))).into_response(),
        _ => refused("give a status from 200 to 999"),
    }
}
