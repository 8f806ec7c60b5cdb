//! Browser origins: a page on another site must not reach the hub through the user's
//! browser (a WebSocket is not subject to CORS, so the `Origin` header is checked here).
//!
//! A request without `Origin` (a program, not a browser) passes to authentication. A
//! request with one passes when it is the hub's own origin (the `Host` it was sent to, so
//! the dashboard served by the hub works) or on the allow-list (`--allowed-origins`);
//! anything else gets 403 before Socket.IO or a handler sees it. CORS answers name only
//! allowed origins, never `*`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The allowed origins, normalised (`scheme://host[:port]`, lower case, no trailing slash).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    allowed: Vec<String>,
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Origins {
    /// The allow-list.
    pub fn new(allowed: &[String]) -> Origins {
        Origins {
            allowed: allowed
                .iter()
                .map(|o| normalise(o))
                .filter(|o| !o.is_empty())
                .collect(),
        }
    }

    /// Whether a request from `origin` to `host` (its `Host` header) may proceed.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = normalise(origin);
        if self.allowed.iter().any(|a| a == &origin) {
            return true;
        }
        let Some((_, authority)) = origin.split_once("://") else {
            return false;
        };
        host.is_some_and(|h| normalise(h) == authority)
    }
}

/// Refuses cross-origin browser requests that are not allowed.
pub async fn guard(State(origins): State<Arc<Origins>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if !origins.allows(origin, host) {
            tracing::warn!(%origin, path = %req.uri().path(), "refused a cross-origin request");
            let body = gleitzeit_protocol::GzError::new(
                gleitzeit_protocol::ErrorCode::PermissionDenied,
                format!("origin {origin:?} is not allowed"),
            )
            .with_hint("add it with central-hub --allowed-origins (GLEITZEIT_ALLOWED_ORIGINS)");
            return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
        }
    }
    next.run(req).await
}

/// CORS for the allowed origins only (credentials allowed, so never `*`).
pub fn cors(allowed: &[String]) -> CorsLayer {
    let list: Vec<HeaderValue> = Origins::new(allowed)
        .allowed
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .allow_credentials(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origin_and_listed_origins_pass_others_do_not() {
        let o = Origins::new(&["http://localhost:5173/".to_string()]);
        assert!(o.allows("http://127.0.0.1:8000", Some("127.0.0.1:8000")));
        assert!(o.allows("http://LOCALHOST:5173", Some("127.0.0.1:8000")));
        assert!(!o.allows("https://evil.example", Some("127.0.0.1:8000")));
        assert!(!o.allows("null", Some("127.0.0.1:8000")));
        assert!(!o.allows("http://127.0.0.1:8001", Some("127.0.0.1:8000")));
    }
}
