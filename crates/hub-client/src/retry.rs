//! Requests that are safe to send more than once (reads, and submissions carrying an
//! idempotency key), retried within the caller's time limit instead of failing at the first
//! hiccup: a lost connection (GZ1031, failed at once when the connection drops, so the next
//! attempt goes out through the next hub), no component of the target connected at the
//! moment (GZ1020, e.g. a queue-manager restarting), its store unreachable for a moment
//! (GZ1001), or no reply within one attempt's time (GZ1030, e.g. a reply lost with a hub
//! that died after relaying the request).

use std::time::Duration;

use gleitzeit_protocol::errors::{ErrorCode, GzError};
use gleitzeit_protocol::records::JsonText;
use gleitzeit_protocol::{Envelope, Target};
use serde_json::Value;
use tokio::time::Instant;
use tracing::debug;

use crate::HubClient;

/// The first pause between attempts; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Whether a failed attempt of a retry-safe request may be sent again.
pub fn is_retry_safe_failure(error: &GzError) -> bool {
    [
        ErrorCode::Disconnected,
        ErrorCode::NoRoute,
        ErrorCode::RequestTimeout,
        ErrorCode::RedisUnavailable,
    ]
    .iter()
    .any(|c| c.as_str() == error.code)
}

impl HubClient {
    /// Sends a request that is safe to repeat and waits for its reply at most `total`; each
    /// attempt waits at most `attempt` for its reply. A failure of
    /// [`is_retry_safe_failure`] is followed by another attempt (a new envelope) after a
    /// backoff of 0.1 s doubling to 2 s, as long as time is left; any other answer is
    /// returned at once.
    pub async fn request_retrying(
        &self,
        target: Target,
        event: &str,
        payload: Value,
        total: Duration,
        attempt: Duration,
    ) -> Result<Value, GzError> {
        self.retrying(event, total, attempt, |wait| {
            self.request_with_timeout(target.clone(), event, payload.clone(), wait)
        })
        .await
    }

    /// [`HubClient::request_retrying`] with the reply read straight from its text into `T`
    /// ([`crate::PendingReply::reply_as`]): no tree of values for a big reply, such as a
    /// catch-up of thousands of events.
    pub async fn request_retrying_as<T: serde::de::DeserializeOwned>(
        &self,
        target: Target,
        event: &str,
        payload: Value,
        total: Duration,
        attempt: Duration,
    ) -> Result<T, GzError> {
        self.retrying(event, total, attempt, |wait| {
            let pending = self.send_request(Envelope::new(target.clone(), event, payload.clone()));
            async move { pending?.reply_as::<T>(wait).await }
        })
        .await
    }

    /// [`HubClient::request_retrying`] for a payload already written as JSON text, sent in
    /// parts when it is big ([`HubClient::send_request_in_parts`]): a submission.
    pub async fn request_retrying_in_parts(
        &self,
        target: Target,
        event: &str,
        payload: JsonText,
        total: Duration,
        attempt: Duration,
    ) -> Result<Value, GzError> {
        self.retrying(event, total, attempt, |wait| {
            let envelope = Envelope::with_text(target.clone(), event, payload.clone());
            let pending = self.send_request_in_parts(envelope);
            async move { pending?.reply(wait).await }
        })
        .await
    }

    /// Attempts `send` (given how long the attempt may wait) until it succeeds, fails for
    /// good, or `total` is up.
    async fn retrying<T, F, Fut>(
        &self,
        event: &str,
        total: Duration,
        attempt: Duration,
        mut send: F,
    ) -> Result<T, GzError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, GzError>>,
    {
        // A caller's limit past a year is as good as a year (and cannot overflow `Instant`).
        let total = total.min(Duration::from_secs(365 * 24 * 3600));
        let deadline = Instant::now() + total;
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = attempt.min(left).max(Duration::from_millis(1));
            let error = match send(wait).await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !is_retry_safe_failure(&error) || Instant::now() + backoff >= deadline {
                return Err(if attempts > 1 {
                    GzError {
                        message: format!(
                            "{} (after {attempts} attempts in {:.1}s)",
                            error.message,
                            total.as_secs_f64()
                        ),
                        ..error
                    }
                } else {
                    error
                });
            }
            debug!(event, code = %error.code, attempt = attempts, "retrying a retry-safe request");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_routing_failures_are_retried() {
        for code in [
            ErrorCode::Disconnected,
            ErrorCode::NoRoute,
            ErrorCode::RequestTimeout,
            ErrorCode::RedisUnavailable,
        ] {
            assert!(is_retry_safe_failure(&GzError::new(code, "x")), "{code:?}");
        }
        for code in [
            ErrorCode::ValidationFailed,
            ErrorCode::IdempotencyConflict,
            ErrorCode::PermissionDenied,
        ] {
            assert!(!is_retry_safe_failure(&GzError::new(code, "x")), "{code:?}");
        }
    }
}
