//! Resource limits of python jobs, and how they reach the worker.
//!
//! `worker.py` applies them with `resource.setrlimit` at start-up, soft and hard alike, so a
//! job cannot raise them again (unless the provider runs as root, which can):
//! `RLIMIT_AS` (address space), `RLIMIT_FSIZE` (largest file written) and `RLIMIT_NPROC`
//! (processes; the kernel counts every process and thread of the user, so the limit is the
//! user's count when the worker starts plus [`Limits::processes`]). CPU time is per job:
//! before each job the worker sets the soft `RLIMIT_CPU` to the CPU time it has used so far
//! plus the job's timeout (`SIGXCPU` ends the worker; reported as GZ2027), and lifts it after.
//! Output is capped inside the worker, so a job printing without end costs the provider at
//! most [`Limits::max_output`] bytes.

use serde::Serialize;
use std::time::Duration;

/// Default address-space limit per worker process: 2 GiB.
pub const DEFAULT_ADDRESS_SPACE: u64 = 2 << 30;
/// Default largest file a job may write: 1 GiB.
pub const DEFAULT_FILE_SIZE: u64 = 1 << 30;
/// Default processes a job may add to the user's count.
pub const DEFAULT_PROCESSES: u64 = 256;
/// Default size limit of a job's reply (output, result and error text together): 16 MiB.
pub const DEFAULT_MAX_OUTPUT: usize = 16 << 20;
/// Upper bound of [`Limits::max_output`]: several replies travel in one hub message, whose
/// limit is 64 MiB.
pub const MAX_OUTPUT_CEILING: usize = 48 << 20;
/// Smallest useful [`Limits::max_output`].
pub const MAX_OUTPUT_FLOOR: usize = 4 << 10;
/// Default timeout of a job that names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Limits applied to every job of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// `RLIMIT_AS` in bytes; `None` leaves it unlimited.
    pub address_space: Option<u64>,
    /// `RLIMIT_FSIZE` in bytes; `None` leaves it unlimited.
    pub file_size: Option<u64>,
    /// Processes (and threads) a job may start on top of the user's count when its worker
    /// started; `None` leaves `RLIMIT_NPROC` alone. Not enforced for root.
    pub processes: Option<u64>,
    /// Largest reply a job may produce, in bytes (within [`MAX_OUTPUT_FLOOR`] and
    /// [`MAX_OUTPUT_CEILING`]); output beyond it is dropped and the job fails with GZ2026.
    pub max_output: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            address_space: Some(DEFAULT_ADDRESS_SPACE),
            file_size: Some(DEFAULT_FILE_SIZE),
            processes: Some(DEFAULT_PROCESSES),
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

impl Limits {
    /// The worker's start-up configuration, its only command-line argument.
    pub(crate) fn worker_config(&self) -> String {
        #[derive(Serialize)]
        struct WorkerConfig {
            address_space: Option<u64>,
            file_size: Option<u64>,
            processes: Option<u64>,
            max_output: usize,
        }
        let config = WorkerConfig {
            address_space: self.address_space,
            file_size: self.file_size,
            processes: self.processes,
            max_output: self.max_output.clamp(MAX_OUTPUT_FLOOR, MAX_OUTPUT_CEILING),
        };
        serde_json::to_string(&config).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The longest reply line the pool reads from a worker: the limit plus room for the
    /// envelope of the reply; anything longer breaks the protocol and ends the worker.
    pub(crate) fn reply_line_limit(&self) -> usize {
        self.max_output.clamp(MAX_OUTPUT_FLOOR, MAX_OUTPUT_CEILING) + (1 << 20)
    }
}
