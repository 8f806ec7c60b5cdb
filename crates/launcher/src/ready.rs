//! Readiness without guessing ports. A binary started with `--ready-file PATH` binds (port 0
//! is fine), then writes the address it actually bound to `PATH` (written beside and
//! renamed, so a reader never sees half of it: see `gleitzeit_runtime::write_ready_file`).
//! Once the file is there the socket listens: connections are accepted from then on.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{LaunchError, Process};

/// How often the file is looked for.
const POLL: Duration = Duration::from_millis(10);

/// The address in a ready file; `None` while it is absent.
pub fn read_ready_file(path: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits until `process` has written its ready file at `path`: the address it bound.
/// Fails as soon as the process exits, or after `limit`, with the end of its log.
pub async fn wait_ready_file(
    process: &mut Process,
    path: &Path,
    limit: Duration,
) -> Result<SocketAddr, LaunchError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(addr) = read_ready_file(path) {
            return Ok(addr);
        }
        if let Some(status) = process.try_status() {
            return Err(LaunchError::Exited {
                name: process.name().to_string(),
                status: status.to_string(),
                log: process.log().to_path_buf(),
                tail: process.log_tail(20),
            });
        }
        if Instant::now() >= deadline {
            return Err(LaunchError::NotReady {
                name: process.name().to_string(),
                limit,
                log: process.log().to_path_buf(),
                tail: process.log_tail(20),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}
