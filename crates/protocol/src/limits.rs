//! Limits on what travels on the wire, and safe conversions of outside numbers.
//!
//! Every number that arrives from outside (a workflow file, a raw client's payload, a
//! stored record) and becomes a [`Duration`], an [`Instant`], a count or a size goes through
//! one of these helpers, so that no value, however large, NaN or negative, can panic a
//! service. Sizes are measured by streaming serialization into a counter, so an oversized
//! value is recognised without a second copy of it in memory.

use std::io;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::errors::{ErrorCode, GzError};
use crate::payloads::TaskOutcome;

/// The hub's limit on one message (Socket.IO payload), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// A message whose payload text is larger travels in parts of at most this many bytes
/// ([`crate::envelope::Part`]): no hub or receiver holds a copy of a message of megabytes.
pub const MESSAGE_PART_BYTES: usize = 1024 * 1024;

/// The largest result (or error) one task outcome may carry, in bytes of JSON. A larger
/// one is replaced by a GZ2026 error with a truncated preview.
pub const MAX_OUTCOME_BYTES: usize = 16 * 1024 * 1024;

/// How much of an oversized output is kept as a preview in the GZ2026 error, in bytes.
pub const TRUNCATED_PREVIEW_BYTES: usize = 64 * 1024;

/// The marker that ends a truncated preview.
pub const TRUNCATION_MARKER: &str = "…[truncated]";

/// The longest timeout any component accepts from outside: 7 days.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Seconds from outside as a [`Duration`]: `None` unless finite, more than 0 and at most
/// `max`. Never panics (no `Duration::from_secs_f64` on outside numbers).
pub fn duration_from_secs(secs: f64, max: Duration) -> Option<Duration> {
    if !(secs.is_finite() && secs > 0.0) {
        return None;
    }
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| *d <= max && !d.is_zero())
}

/// Milliseconds from outside as a [`Duration`] capped at [`MAX_TIMEOUT`].
pub fn duration_from_millis_capped(ms: u64) -> Duration {
    Duration::from_millis(ms).min(MAX_TIMEOUT)
}

/// `now + after`, or `None` when that instant cannot be represented.
pub fn deadline_after(now: Instant, after: Duration) -> Option<Instant> {
    now.checked_add(after)
}

/// Counts bytes written; fails once more than `limit` were written, which stops the
/// serializer early.
struct Counter {
    written: usize,
    limit: usize,
}

impl io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written = self.written.saturating_add(buf.len());
        if self.written > self.limit {
            return Err(io::Error::other("limit exceeded"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Keeps the first `limit` bytes written, then stops the serializer.
struct Prefix {
    kept: Vec<u8>,
    limit: usize,
}

impl io::Write for Prefix {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = self.limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&buf[..buf.len().min(room)]);
        if buf.len() > room {
            return Err(io::Error::other("preview full"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The size of `value` as JSON if it is at most `limit` bytes; `None` when it is larger
/// (measured without building the text).
pub fn json_size_within<T: Serialize + ?Sized>(value: &T, limit: usize) -> Option<usize> {
    let mut counter = Counter { written: 0, limit };
    serde_json::to_writer(&mut counter, value)
        .ok()
        .map(|()| counter.written)
}

/// The first `limit` bytes of `value` as JSON, cut at a character boundary and followed by
/// [`TRUNCATION_MARKER`] when it was longer.
pub fn json_preview<T: Serialize + ?Sized>(value: &T, limit: usize) -> String {
    let mut prefix = Prefix {
        kept: Vec::new(),
        limit,
    };
    let complete = serde_json::to_writer(&mut prefix, value).is_ok();
    let mut text = match String::from_utf8(prefix.kept) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).unwrap_or_default()
        }
    };
    if !complete {
        text.push_str(TRUNCATION_MARKER);
    }
    text
}

/// An outcome whose result or error is larger than `max_bytes` of JSON becomes a GZ2026
/// failure carrying a truncated preview; others pass unchanged.
pub fn cap_outcome(outcome: TaskOutcome, max_bytes: usize) -> TaskOutcome {
    cap_outcome_measured(outcome, max_bytes).0
}

/// [`cap_outcome`], with the bytes of what is left of the result and the error as JSON
/// (measured in the same pass, for callers that batch outcomes by size).
pub fn cap_outcome_measured(mut outcome: TaskOutcome, max_bytes: usize) -> (TaskOutcome, usize) {
    let result_size = outcome
        .result
        .as_ref()
        .map(|r| json_size_within(r, max_bytes));
    let error_size = outcome
        .error
        .as_ref()
        .map(|e| json_size_within(e, max_bytes));
    let result_too_large = matches!(result_size, Some(None));
    let error_too_large = matches!(error_size, Some(None));
    if !result_too_large && !error_too_large {
        let bytes = result_size.flatten().unwrap_or(0) + error_size.flatten().unwrap_or(0);
        return (outcome, bytes);
    }
    let (what, preview) = match (&outcome.result, &outcome.error) {
        (Some(r), _) if result_too_large => ("result", json_preview(r, TRUNCATED_PREVIEW_BYTES)),
        (_, Some(e)) => ("error", json_preview(e, TRUNCATED_PREVIEW_BYTES)),
        _ => ("output", String::new()),
    };
    outcome.result = None;
    let error = output_too_large(what, max_bytes, preview);
    let bytes = json_size_within(&error, usize::MAX).unwrap_or(0);
    outcome.error = Some(error);
    (outcome, bytes)
}

/// The GZ2026 error for an output over `limit` bytes.
pub fn output_too_large(what: &str, limit: usize, preview: String) -> GzError {
    GzError::new(
        ErrorCode::OutputTooLarge,
        format!("the task's {what} is larger than {limit} bytes; it was truncated"),
    )
    .with_details(json!({ "limit_bytes": limit, "truncated_output": preview }))
}

/// The GZ7011 error for an outside number outside its range.
pub fn out_of_range(field: &str, value: impl std::fmt::Display, range: &str) -> GzError {
    GzError::new(
        ErrorCode::OutOfRange,
        format!("`{field}` must be {range}, not {value}"),
    )
}

/// The GZ7012 error for a request over a size limit.
pub fn too_large(
    what: &str,
    size: impl std::fmt::Display,
    limit: impl std::fmt::Display,
) -> GzError {
    GzError::new(
        ErrorCode::TooLarge,
        format!("{what} is too large: {size} (the limit is {limit})"),
    )
}

/// Whether a JSON value fits in `limit` bytes.
pub fn fits(value: &Value, limit: usize) -> bool {
    json_size_within(value, limit).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_seconds_never_panic() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0, 1e300, 1e19, -0.0] {
            assert_eq!(duration_from_secs(bad, MAX_TIMEOUT), None, "{bad}");
        }
        assert_eq!(
            duration_from_secs(1.5, MAX_TIMEOUT),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(duration_from_secs(1e-12, MAX_TIMEOUT), None);
        assert!(deadline_after(Instant::now(), Duration::MAX).is_none());
        assert_eq!(duration_from_millis_capped(u64::MAX), MAX_TIMEOUT);
    }

    #[test]
    fn sizes_are_measured_without_copies() {
        let v = json!({ "a": "x".repeat(100) });
        assert_eq!(json_size_within(&v, 1000), Some(v.to_string().len()));
        assert_eq!(json_size_within(&v, 10), None);
        assert!(fits(&v, 200));
    }

    #[test]
    fn previews_end_with_the_marker_on_a_char_boundary() {
        let v = json!("ééééééééé");
        let p = json_preview(&v, 6);
        assert!(p.ends_with(TRUNCATION_MARKER), "{p}");
        assert!(p.starts_with("\"éé"), "{p}");
        assert_eq!(json_preview(&json!(1), 6), "1");
    }

    #[test]
    fn an_oversized_result_becomes_gz2026_with_a_preview() {
        let o = TaskOutcome::finished(
            "w".into(),
            "t".into(),
            1,
            Ok(json!("y".repeat(100_000))),
            "p".into(),
            0,
        );
        let capped = cap_outcome(o.clone(), 1000);
        assert!(capped.result.is_none());
        let err = capped.error.expect("error");
        assert!(err.is(ErrorCode::OutputTooLarge));
        let preview = err.details.expect("details")["truncated_output"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(preview.ends_with(TRUNCATION_MARKER));
        assert!(preview.len() < 100_000 && preview.len() > TRUNCATED_PREVIEW_BYTES / 2);
        assert_eq!(cap_outcome(o.clone(), 200_000), o);
        // Measured in the same pass: the result as it stays, or the error that replaced it.
        let (kept, bytes) = cap_outcome_measured(o.clone(), 200_000);
        assert_eq!(bytes, 100_002);
        assert_eq!(kept, o);
        let (capped, bytes) = cap_outcome_measured(o, 1000);
        let error_bytes = serde_json::to_string(&capped.error).map_or(0, |e| e.len());
        assert_eq!(bytes, error_bytes);
    }
}
