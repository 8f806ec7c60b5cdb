//! The Gleitzeit wire contract.
//!
//! Every message between Gleitzeit components is an [`Envelope`] carried over Socket.IO via
//! the central hub. This crate is the one place where event names ([`events`]), payload types
//! ([`payloads`]), routing targets ([`Target`]) and error codes ([`errors`]) are spelled.
//! `docs/protocol.md` describes the same contract for clients written in other languages.

#![forbid(unsafe_code)]

pub mod accounts;
pub mod catalog;
pub mod envelope;
pub mod errors;
pub mod events;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod payloads;
pub mod records;
pub mod replies;
pub mod requests;
pub mod routing;
pub mod status;
pub mod target;

pub use envelope::{Envelope, RawEnvelope, Reply};
pub use errors::{ErrorCode, GzError};
pub use identity::{Identity, Role};
pub use target::Target;

/// A typed payload or reply as the JSON an envelope carries.
///
/// # Errors
///
/// GZ8001 if `value` cannot be represented in JSON (a map with non-string keys), which the
/// protocol's own types never are.
pub fn to_payload<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, GzError> {
    serde_json::to_value(value).map_err(|e| GzError::new(ErrorCode::Internal, e.to_string()))
}

/// Version of the wire protocol carried in every envelope (`v`).
pub const PROTOCOL_VERSION: u32 = 1;

/// The Socket.IO event name under which clients send envelopes to the hub.
///
/// The hub delivers envelopes to clients under the Socket.IO event named by
/// [`Envelope::event`], so browser clients can subscribe with `socket.on("task_completed", …)`.
pub const SIO_ENVELOPE_EVENT: &str = "envelope";
