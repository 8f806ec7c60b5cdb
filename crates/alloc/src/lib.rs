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
//! - freed pages are given back only after a delay (1 s, 10 s for its arenas): the
//!   temporaries of a big submission stay resident beside what follows them. [`configure`]
//!   gives them back at once, unless `MIMALLOC_PURGE_DELAY` is set (10 ms left the hub
//!   and the resolver ~15 MiB larger at a 100,000-task run, for no speed that could be
//!   told from the machine's noise).
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

/// Milliseconds before mimalloc gives freed memory back to the system.
const PURGE_DELAY_MS: std::os::raw::c_long = 0;

/// Sets the allocator's options; call it first thing in `main` (`gleitzeit_runtime` does,
/// when it sets up logging). An operator's `MIMALLOC_PURGE_DELAY` is left as it is (mimalloc
/// reads its `MIMALLOC_*` variables when the process starts).
pub fn configure() {
    if cfg!(gleitzeit_system_alloc) || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: `mi_option_set` takes an option number and a value and only stores the value
    // in mimalloc's option table (an atomic store); it may be called at any time from any
    // thread. The number is `mi_option_purge_delay` of the pinned mimalloc version.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(OPTION_PURGE_DELAY, PURGE_DELAY_MS);
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
    fn freed_memory_goes_back_soon() {
        let set_by_operator =
            cfg!(gleitzeit_system_alloc) || std::env::var_os("MIMALLOC_PURGE_DELAY").is_some();
        let before = purge_delay();
        configure();
        if !set_by_operator {
            // mimalloc 3's default is 1000 ms (a wrong option number would read another
            // option's value), or ours if `configure` ran already in this process.
            assert!(before == 1000 || before == PURGE_DELAY_MS, "read {before}");
            assert_eq!(purge_delay(), PURGE_DELAY_MS);
        }
    }
}
