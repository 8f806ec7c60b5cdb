//! The WAL checkpointer: a thread with its own connection that checkpoints after writes
//! (nudged, with a pause) and keeps the WAL file bounded.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

/// Runs WAL checkpoints on a thread of its own, with its own connection.
///
/// With SQLite's automatic checkpoints, the commit that pushes the WAL past its threshold
/// copies the WAL into the database file and syncs it before returning, which more than
/// doubles the latency of a large batch. Here a commit only nudges this thread, which
/// runs a `PASSIVE` checkpoint (never blocking the writer) at most every [`CHECKPOINT_PAUSE`].
/// Only the first commit after a checkpoint sends a nudge (`pending`): waking this thread
/// for every commit cost a futex wake-up and a context switch per commit, on the critical
/// path of every step of a dependency chain.
/// The writer's own automatic checkpoint stays as a backstop at
/// [`BACKSTOP_CHECKPOINT_PAGES`], should this thread fall behind.
pub(super) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    /// A commit happened since the checkpointer last started a checkpoint (and nudged it).
    pending: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Minimum time between two background checkpoints, so bursts of small commits share one.
pub(super) const CHECKPOINT_PAUSE: Duration = Duration::from_millis(100);
/// WAL size (in pages) at which the writer checkpoints by itself (about 40 MB).
pub(super) const BACKSTOP_CHECKPOINT_PAGES: i64 = 10_000;
/// Page cache of the writer connection, in KiB (SQLite's convention: negative = KiB).
///
/// Small on purpose: when an insert splits a B-tree page, SQLite parks a page under the
/// number of the locking page (1 GiB in, `sqlite3PagerRekey` in `balance_nonroot`), and every
/// commit after that walks the whole page cache to drop pages past the end of the file
/// (`pcache1TruncateUnsafe`). Task rows grow as tasks move on, so nearly every commit
/// splits a page: with 8 MiB (~2,000 pages) that walk was 5 % of the queue-manager's CPU.
/// The file's pages stay in the OS cache either way.
pub(super) const PAGE_CACHE_KIB: i64 = -2 * 1024;
/// Size (bytes) the WAL file is truncated to after a checkpoint reset it.
pub(super) const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

impl Checkpointer {
    pub(super) fn start(path: &Path) -> Result<Self, StoreError> {
        let conn =
            Connection::open(path).map_err(|e| StoreError::backend("open checkpointer", e))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| StoreError::backend("set busy timeout", e))?;
        let (nudge, nudges) = sync_channel(1);
        let pending = Arc::new(AtomicBool::new(false));
        let location = path.display().to_string();
        let flag = pending.clone();
        let thread = std::thread::Builder::new()
            .name("gleitzeit-store-checkpoint".to_string())
            .spawn(move || checkpoint_loop(&conn, &nudges, &flag, &location))
            .map_err(|e| StoreError::backend("start checkpointer thread", e))?;
        Ok(Checkpointer {
            nudge: Some(nudge),
            pending,
            thread: Some(thread),
        })
    }

    pub(super) fn nudge(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            // An earlier commit since the last checkpoint nudged already.
            return;
        }
        if let Some(nudge) = &self.nudge {
            // A full channel already holds a nudge: nothing to add.
            let _ = nudge.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Disconnecting the channel ends the loop; the last connection to close checkpoints.
        self.nudge = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checkpoints after commits: at once after a quiet spell, then at most every
/// [`CHECKPOINT_PAUSE`]. `pending` is cleared before each checkpoint, so the first commit
/// after it nudges again; the commits after that one do not (see [`Checkpointer`]).
pub(super) fn checkpoint_loop(
    conn: &Connection,
    nudges: &Receiver<()>,
    pending: &AtomicBool,
    location: &str,
) {
    let mut dirty = false;
    loop {
        if !dirty && nudges.recv().is_err() {
            return;
        }
        pending.store(false, Ordering::Release);
        let started = Instant::now();
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
        }) {
            Ok((frames, copied)) => tracing::trace!(
                location,
                frames,
                copied,
                elapsed_us = started.elapsed().as_micros() as u64,
                "WAL checkpoint"
            ),
            Err(e) => tracing::warn!(location, error = %e, "WAL checkpoint failed"),
        }
        dirty = false;
        let until = Instant::now() + CHECKPOINT_PAUSE;
        loop {
            match nudges.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok(()) => dirty = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
}
