//! The one launcher of Gleitzeit's real binaries: `gz run`/`gz start`, `gz bench` and the
//! end-to-end tests that kill or restart processes all start children through it.
//!
//! - [`binaries`]: where the binaries are (beside the running executable, or the target
//!   dir above a test executable's `deps/`).
//! - [`process`]: a child started with its arguments and environment, stdout and stderr in
//!   a log file, stopped by the pid it was started with (terminate, wait, kill) and killed
//!   on drop unless detached.
//! - [`ready`]: readiness without guessing ports: a binary given `--ready-file PATH` binds
//!   port 0 and writes the address it actually bound into the file once it listens.
//! - [`redis`]: a `redis-server` of a test's own (which cannot bind port 0): a port is
//!   picked, taken again on a bind failure, and readiness is `PING` plus `loading:0`.

#![forbid(unsafe_code)]

pub mod binaries;
mod error;
pub mod process;
pub mod ready;
pub mod redis;

pub use binaries::{bin_dir, binary};
pub use error::LaunchError;
pub use process::{Launch, Process, Sig};
pub use ready::{read_ready_file, wait_ready_file};
pub use redis::RedisServer;
