//! Gleitzeit python-provider: serves `python/execute` in a pool of warm Python workers.
//!
//! [`pool`] runs the code; [`service`] connects to the hub, registers `python/execute` with
//! the pool size as capacity, and runs the tasks it is handed. Tasks are confined
//! ([`confine`] roots, [`limits`] rlimits and output cap, [`reap`] process trees; what is and
//! is not isolated: `docs/python-confinement.md`).
//!
//! Consumes: `execute_tasks`, `cancel_tasks`, `ping`, `shutdown`.
//! Emits: `task_outcomes` (to the engine that sent the tasks).

#![forbid(unsafe_code)]

pub mod confine;
pub mod error;
pub mod job;
pub mod limits;
pub mod outcomes;
pub mod pool;
pub mod reap;
pub mod service;
mod worker;

pub use service::{run, Config, ServiceError};
