//! Error answers in the API dialects: Ollama's `{"error":"..."}`, OpenAI's
//! `{"error":{"message","type","param","code"}}`, Anthropic's
//! `{"type":"error","error":{"type","message"}}` and Gemini's
//! `{"error":{"code","message","status"}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Which API shape an error is rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Ollama's native API (`/api/*`) and the simulator's own endpoints.
    Ollama,
    /// The OpenAI-compatible API (`/v1/*`).
    OpenAi,
    /// Anthropic's Messages API (`/v1/messages`).
    Anthropic,
    /// Google Gemini's API (`/v1beta/*`).
    Gemini,
}

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body was not the JSON the endpoint expects.
    #[error("{0}")]
    BadRequest(String),
    /// `--api-key` is set and the request did not carry it (as a bearer token, or in the
    /// dialect's key header).
    #[error("unauthorized: missing or wrong API key")]
    Unauthorized,
    /// The model is not in the served list.
    #[error("model \"{0}\" not found, try pulling it first")]
    ModelNotFound(String),
    /// Every slot is taken and the overflow policy is to reject.
    #[error("server busy")]
    Busy,
    /// The configured error rate picked this request.
    #[error("simulated failure")]
    Simulated,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Busy => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Simulated => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// This error rendered in `dialect`.
    pub fn into_dialect(self, dialect: Dialect) -> DialectError {
        DialectError {
            dialect,
            error: self,
        }
    }

    fn openai_type_and_code(&self) -> (&'static str, &'static str) {
        match self {
            ApiError::BadRequest(_) => ("invalid_request_error", "invalid_request"),
            ApiError::Unauthorized => ("invalid_request_error", "invalid_api_key"),
            ApiError::ModelNotFound(_) => ("invalid_request_error", "model_not_found"),
            ApiError::Busy => ("rate_limit_error", "server_busy"),
            ApiError::Simulated => ("server_error", "simulated_failure"),
        }
    }

    fn anthropic_type(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid_request_error",
            ApiError::Unauthorized => "authentication_error",
            ApiError::ModelNotFound(_) => "not_found_error",
            ApiError::Busy => "rate_limit_error",
            ApiError::Simulated => "api_error",
        }
    }

    fn gemini_status(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "INVALID_ARGUMENT",
            ApiError::Unauthorized => "UNAUTHENTICATED",
            ApiError::ModelNotFound(_) => "NOT_FOUND",
            ApiError::Busy => "RESOURCE_EXHAUSTED",
            ApiError::Simulated => "INTERNAL",
        }
    }
}

/// An [`ApiError`] together with the dialect it is answered in.
#[derive(Debug)]
pub struct DialectError {
    dialect: Dialect,
    error: ApiError,
}

impl IntoResponse for DialectError {
    fn into_response(self) -> Response {
        let status = self.error.status();
        let message = self.error.to_string();
        let body = match self.dialect {
            Dialect::Ollama => json!({ "error": message }),
            Dialect::OpenAi => {
                let (kind, code) = self.error.openai_type_and_code();
                json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })
            }
            Dialect::Anthropic => {
                json!({ "type": "error", "error": { "type": self.error.anthropic_type(), "message": message } })
            }
            Dialect::Gemini => json!({ "error": {
                "code": status.as_u16(), "message": message, "status": self.error.gemini_status(),
            } }),
        };
        (status, Json(body)).into_response()
    }
}

/// Parses a JSON request body, turning failures into [`ApiError::BadRequest`].
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}
