//! What Gleitzeit hub components are built from, above the transport.
//!
//! - [`component`]: the loop of services that are not providers ([`run_component`] over a
//!   [`Component`]): envelopes, an internal channel and a tick, one at a time.
//! - [`Provider`] and [`serve`]: the provider runtime. A provider supplies its own logic
//!   (who it is, how it runs one task); `serve` does registration, holdings and
//!   `tasks_held` reports, batched outcomes per engine, cancellation, load reporting and the
//!   drain on shutdown. `docs/providers.md` shows how to write one.
//! - [`metrics`]: the small recorder services keep their figures in, and the answer to the
//!   hub's `metrics` request, which both the loop and the runtime give for every component.
//!
//! Why a crate of its own rather than part of `gleitzeit-hub-client`: the client is the
//! transport (connect, register, heartbeat, request/reply, reconnect) that the CLI and
//! tests use too; how a service organises its work on top of it — the component loop, what
//! a provider holds and owes its engines — is service behaviour, shared by every service
//! but by no plain client. Both halves live here because a provider is a component with a
//! fixed handler, and they share the same pieces ([`holdings`], [`outcomes`]).

#![forbid(unsafe_code)]

pub mod component;
pub mod holdings;
pub mod metrics;
pub mod outcomes;
pub mod provider;
pub mod serve;
mod tasks;

pub use component::{run_component, Component, Events, Every, NoInternal};
pub use holdings::Holdings;
pub use outcomes::{spawn_held_reports, OutcomeSender, HELD_REPORT_INTERVAL};
pub use provider::{Concurrency, Provider, ProviderInfo, TaskContext};
pub use serve::{serve, ServeConfig, DEFAULT_GRACE};

#[cfg(test)]
mod tests;
