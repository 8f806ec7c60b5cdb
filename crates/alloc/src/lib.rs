//! The memory allocator of every Gleitzeit binary: [mimalloc] (version 3) instead of the
//! C library's `malloc`, and the options it runs with ([`configure`]).
//!
//! Why: a queue-manager or resolver holding a big workflow makes millions of small
//! allocations (ids, names, JSON texts of a few dozen bytes). glibc's `malloc` adds a
//! header to each and rounds the smallest up to 32 bytes, and keeps what a submission's
//! temporaries freed without giving it back; mimalloc keeps small blocks in pages of one
//! size class (no header), and gives freed pages back to the system. Measured in
//! `docs/performance.md` ("The allocator").
//!
//! Two of mimalloc's defaults do not suit a service that must stay small:
//! - transparent huge pages (THP): on a kernel that grants them on request, every region
//!   mimalloc maps is backed by 2 MiB pages, and an idle service grows from ~10 to ~20 MiB
//!   resident. Built without (`no_thp`).
//! - freed pages are given back only after a delay (1 s, 10 s for its arenas, where every
//!   purge happens in version 3): the temporaries of a big submission stay resident beside
//!   what follows them. What suits a process depends on its [`Footprint`]:
//!   - a process that holds workflows (the queue-manager, the resolver) gives freed pages
//!     back at once: its peak is what a big workflow costs (a delay of 100 ms lifted the
//!     suite's peak at a 100,000-task run from 178 to 212 MiB, 20 ms to 194 MiB);
//!   - a process that passes messages on (the hub, engines, providers, `gz`) keeps them
//!     for 100 ms: given back at once, a page freed by one message was handed back
//!     (`madvise`) and faulted in and zeroed again by the next: 20,000 trivial tasks made
//!     ~39,000 more page faults and ~2,400 more `madvise` calls, and held resident only
//!     2–5 MiB less per process.
//!
//!   [`configure`] sets the delay unless an operator set `MIMALLOC_PURGE_DELAY`.
//!
//! Built with `RUSTFLAGS="--cfg gleitzeit_system_alloc"`, the binaries keep the C library's
//! `malloc` (and [`configure`] does nothing): for tools that watch `malloc` itself, such as
//! `heaptrack` (`docs/performance.md`).
//!
//! [mimalloc]: https://github.com/microsoft/mimalloc

#[cfg(not(gleitzeit_system_alloc))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (`mi_option_e` in its `mimalloc.h`, version 3; the
/// Rust bindings do not name it). The version is pinned in the workspace's `Cargo.toml`.
const OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How a process uses memory, which decides how soon it gives freed pages back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Footprint {
    /// It passes messages on and holds little (hub, engines, providers, `gz`): freed pages
    /// are kept [`RELAY_PURGE_DELAY_MS`] for the messages that follow.
    #[default]
    Relay,
    /// It holds workflows (queue-manager, resolver): freed pages go back at once.
    Holder,
}

impl Footprint {
    /// mimalloc's purge delay for it (its arenas wait ten times as long).
    pub fn purge_delay_ms(self) -> std::os::raw::c_long {
        match self {
            Footprint::Relay => RELAY_PURGE_DELAY_MS,
            Footprint::Holder => 0,
        }
    }
}

/// A relaying process's purge delay: 10 ms, so 100 ms for mimalloc's arenas, where its
/// pages are purged.
pub const RELAY_PURGE_DELAY_MS: std::os::raw::c_long = 10;

/// Sets the allocator's options for a process of this footprint; call it first thing in
/// `main` (`gleitzeit_runtime` does, when it sets up logging and when it starts a service).
/// The last call wins. An operator's `MIMALLOC_PURGE_DELAY` is left as it is (mimalloc
/// reads its `MIMALLOC_*` variables when the process starts).
pub fn configure(footprint: Footprint) {
    if cfg!(gleitzeit_system_alloc) || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` takes an option number and a value and only stores the value
    // in mimalloc's option table (an atomic store); it may be called at any time from any
    // thread. The number is `mi_option_purge_delay` of the pinned mimalloc version.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(OPTION_PURGE_DELAY, footprint.purge_delay_ms());
    }
}

/// The purge delay mimalloc runs with now (milliseconds).
pub fn purge_delay() -> std::os::raw::c_long {
    // SAFETY: `mi_option_get` only reads mimalloc's option table.
    #[allow(unsafe_code)]
    let delay = unsafe { libmimalloc_sys::mi_option_get(OPTION_PURGE_DELAY) };
    delay
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_memory_goes_back_as_the_footprint_says() {
        let set_by_operator =
            cfg!(gleitzeit_system_alloc) || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some();
        let before = purge_delay();
        configure(Footprint::Holder);
        if !set_by_operator {
            // mimalloc 3's default is 1000 ms (a wrong option number would read another
            // option's value), or ours if `configure` ran already in this process.
            assert!(
                [1000, 0, RELAY_PURGE_DELAY_MS].contains(&before),
                "read {before}"
            );
            assert_eq!(purge_delay(), 0, "a holder gives freed pages back at once");
        }
        configure(Footprint::Relay);
        if !set_by_operator {
            assert_eq!(purge_delay(), RELAY_PURGE_DELAY_MS, "the last call wins");
        }
    }
}
