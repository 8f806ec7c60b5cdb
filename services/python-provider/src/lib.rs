//! Gleitzeit python-provider: serves `python/execute` and the built-in functions of
//! `python/function` in a pool of warm Python workers.
//!
//! [`pool`] runs the code; [`service`] is the provider on the shared runtime
//! (`gleitzeit_component::serve`): it registers `python/execute` and the routing key of each
//! built-in function ([`functions`]) with the pool size as capacity and turns the tasks it is
//! handed into pool jobs. Tasks are confined
//! ([`confine`] roots, [`limits`] rlimits and output cap, [`reap`] process trees; what is and
//! is not isolated: `docs/python-confinement.md`). Each task runs in a folder of its own
//! holding the files it names, which travel with the workflow ([`files`]).
//!
//! Consumes: `execute_tasks`, `cancel_tasks`, `ping`, `shutdown`.
//! Emits: `task_outcomes` (to the engine that sent the tasks).

#![forbid(unsafe_code)]

pub mod confine;
pub mod error;
pub mod files;
pub mod functions;
pub mod job;
pub mod limits;
pub mod pool;
pub mod reap;
pub mod service;
mod worker;

pub use service::{run, Config, ServiceError};
