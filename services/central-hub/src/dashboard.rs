//! The live dashboard: static assets compiled into the hub, and `POST /validate`.
//!
//! - `GET /`, `GET /dashboard`, `GET /dashboard/` answer the page (`index.html`);
//!   `GET /dashboard/<file>` one of its scripts, its style sheet or its icon. The assets
//!   hold no data and need no key: the page signs in with a key over the Socket.IO
//!   connection, like any client, and reads `/providers` and `/validate` with it. Every
//!   asset is served with a strict `Content-Security-Policy` (scripts and styles from the
//!   hub only, nothing inline, connections to the hub only), `nosniff`, and
//!   `Cache-Control: no-cache` with an `ETag`, so a new hub binary is picked up at once.
//! - `POST /validate` (`Authorization: Bearer KEY`, any role; the body is the workflow's
//!   YAML text) parses and validates a workflow exactly as `gz validate` does and answers
//!   `{"valid", "diagnostics": [{code, severity, message, hint, line, column}], "spec"}`
//!   where `spec` is the normalized workflow when it is valid (what `workflow_submit`
//!   takes), else `null`. Parsing runs on a blocking thread, two at a time at most, so a
//!   big workflow never stalls the hub's event loop.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gleitzeit_protocol::{ErrorCode, GzError};
use gleitzeit_workflow::{parse_workflow, Diagnostic, MethodCatalog, Severity};
use serde_json::{json, Value};

use crate::auth::key_from_headers;
use crate::HubState;

/// The largest body `POST /validate` reads: the hub's message limit (a workflow that does
/// not fit in one message could not be submitted anyway).
pub(crate) const MAX_VALIDATE_BYTES: usize = 64 * 1024 * 1024;

/// Validations running at once; more wait (each may hold a large spec in memory).
const VALIDATIONS_AT_ONCE: usize = 2;

/// What every asset answer carries.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self' ws: wss:; font-src 'self'; \
                   object-src 'none'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// One file of the dashboard.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../dashboard/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The dashboard, compiled in: `cargo build` alone makes a hub that serves it.
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("socket.js", JS),
    asset!("store.js", JS),
    asset!("util.js", JS),
    asset!("charts.js", JS),
    asset!("graph.js", JS),
    asset!("virtual.js", JS),
    asset!("views/overview.js", JS),
    asset!("views/workflows.js", JS),
    asset!("views/workflow.js", JS),
    asset!("views/submit.js", JS),
];

/// The dashboard's routes, with their state applied.
pub(crate) fn router(state: Arc<HubState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/dashboard", get(index))
        .route("/dashboard/", get(index))
        .route("/dashboard/{*file}", get(file))
        .route(
            "/validate",
            post(validate).layer(DefaultBodyLimit::max(MAX_VALIDATE_BYTES)),
        )
        .with_state(state)
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// A strong validator of an asset's bytes (FNV-1a, 64 bits; the files are fixed at build
/// time, so this only tells one build's file from another's).
fn etag(body: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in body {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("\"{hash:016x}-{}\"", body.len())
}

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| ASSETS.iter().map(|a| etag(a.body)).collect())
}

fn serve(name: &str, request: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return with_security_headers(
            (StatusCode::NOT_FOUND, "no such dashboard file").into_response(),
        );
    };
    let asset = &ASSETS[index];
    let tag = etags().get(index).cloned().unwrap_or_default();
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = asset.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        r
    };
    if let Ok(value) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    with_security_headers(response)
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The built-in method catalog, compiled once (its JSON Schemas take a while to build).
fn catalog() -> &'static MethodCatalog {
    static CATALOG: OnceLock<MethodCatalog> = OnceLock::new();
    CATALOG.get_or_init(MethodCatalog::builtin)
}

fn validations() -> &'static tokio::sync::Semaphore {
    static LIMIT: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(VALIDATIONS_AT_ONCE);
    &LIMIT
}

fn refuse(status: StatusCode, err: GzError) -> Response {
    (status, Json(err)).into_response()
}

async fn validate(State(state): State<Arc<HubState>>, headers: HeaderMap, body: Bytes) -> Response {
    let key = key_from_headers(&headers).map(str::to_string);
    if let Err(err) = state.auth.authenticate(key.as_deref()).await {
        tracing::warn!(code = %err.code, "refused a /validate request");
        let status = if err.is(ErrorCode::PermissionDenied) {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::UNAUTHORIZED
        };
        return refuse(status, err);
    }
    let Ok(_permit) = validations().acquire().await else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            GzError::new(ErrorCode::Internal, "the hub is stopping"),
        );
    };
    let answer = tokio::task::spawn_blocking(move || validation(&body)).await;
    match answer {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "workflow validation failed");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                GzError::new(ErrorCode::Internal, "workflow validation failed"),
            )
        }
    }
}

/// The answer of `POST /validate` for a body.
pub(crate) fn validation(body: &[u8]) -> Value {
    let Ok(text) = std::str::from_utf8(body) else {
        let d = Diagnostic::error(
            gleitzeit_workflow::codes::YAML_PARSE_ERROR,
            "the workflow is not UTF-8 text",
        )
        .with_hint("save the file as UTF-8");
        return json!({"valid": false, "diagnostics": [d], "spec": null});
    };
    match parse_workflow(text, catalog()) {
        Ok(parsed) => json!({
            "valid": true,
            "diagnostics": parsed.warnings,
            "tasks": parsed.spec.tasks.len(),
            "spec": parsed.spec.explained(),
        }),
        Err(diagnostics) => json!({
            "valid": !diagnostics.iter().any(|d| d.severity == Severity::Error),
            "diagnostics": diagnostics,
            "spec": null,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_there_and_the_page_names_only_served_files() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap_or_default();
        assert!(page.contains("<script type=\"module\" src=\"/dashboard/app.js\""));
        assert!(!page.contains("<script>"), "no inline scripts");
        assert!(!page.contains("style=\""), "no inline styles");
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
        }
        // Every module the scripts import is served.
        for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = std::str::from_utf8(asset.body).unwrap_or_default();
            let dir = asset.name.rsplit_once('/').map_or("", |(d, _)| d);
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['"', '\'']).nth(1) else {
                    continue;
                };
                let mut parts: Vec<&str> = if dir.is_empty() {
                    Vec::new()
                } else {
                    dir.split('/').collect()
                };
                for part in spec.split('/') {
                    match part {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        p => parts.push(p),
                    }
                }
                let path = parts.join("/");
                assert!(
                    ASSETS.iter().any(|a| a.name == path),
                    "{} imports {spec}, which is not served",
                    asset.name
                );
            }
        }
    }

    #[test]
    fn assets_carry_the_security_headers_and_etags() {
        let r = serve("app.js", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers();
        assert_eq!(h[header::CONTENT_TYPE], JS);
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert!(h[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default()
            .contains("script-src 'self'"));
        let mut again = HeaderMap::new();
        again.insert(header::IF_NONE_MATCH, h[header::ETAG].clone());
        assert_eq!(serve("app.js", &again).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(
            serve("../lib.rs", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn validation_gives_the_normalized_spec_or_placed_diagnostics() {
        let ok = validation(
            b"name: t\ntasks:\n  - id: a\n    method: python/execute\n    parameters: {code: 'result = 1'}\n  - id: b\n    method: python/execute\n    parameters: {code: 'result = 2', context: {x: '${a.result}'}}\n",
        );
        assert_eq!(ok["valid"], true);
        assert_eq!(ok["spec"]["tasks"][1]["dependencies"], json!(["a"]));
        let bad = validation(
            b"name: t\ntasks:\n  - id: a\n    method: python/execute\n    paramters: {}\n",
        );
        assert_eq!(bad["valid"], false);
        assert_eq!(bad["spec"], Value::Null);
        let d = &bad["diagnostics"][0];
        assert_eq!(d["code"], "GZ7001");
        assert_eq!(d["line"], 5);
        assert_eq!(d["column"], 5);
        let syntax = validation(b"name: t\ntasks: [\n");
        assert_eq!(syntax["diagnostics"][0]["code"], "GZ7010");
        assert!(syntax["diagnostics"][0]["line"].is_u64());
        assert_eq!(validation(&[0xff, 0xfe])["valid"], false);
    }
}
