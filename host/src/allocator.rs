//! The process's allocator: mimalloc, which serves a request's many small, short-lived
//! allocations (hyper, tokio, wasmtime's component glue), often freed on another thread than
//! the one that made them, faster than glibc's malloc. Set up so that peak RSS stays at
//! glibc's (figures in bench/README.md): built not to ask for transparent huge pages on its
//! arenas (the `no_thp` feature; with them each touched 2 MiB became resident whole), and
//! purging freed memory soon.

use libmimalloc_sys::{mi_collect, mi_option_set, mi_option_t};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's number for its purge delay option, from `mi_option_e` in the mimalloc 3 header
/// that the pinned libmimalloc-sys builds (its Rust constants do not name it).
const PURGE_DELAY: mi_option_t = 15;

/// How long freed memory stays with mimalloc before it goes back to the system, in ms.
/// mimalloc's default (a second) lets compiling a component at start-up peak well above
/// glibc's RSS; none at all (purging at once) made every emptied page a `madvise` (a TLB
/// shootdown on every core) and a page fault when it filled again, about 0.3 to 0.9 faults
/// per request under load. Ten milliseconds keeps the cold start under glibc's peak and
/// the faults near 0.1 per request.
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Sets the purge delay, unless `MIMALLOC_PURGE_DELAY` (mimalloc's own variable) says
/// otherwise. Called first thing in `main`, before any other thread exists (options are not
/// thread-safe to set).
pub fn tune() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: a plain setter of a global option, on the only thread.
    unsafe { mi_option_set(PURGE_DELAY, PURGE_DELAY_MS) }
}

/// Gives what this thread has freed back to the system now, rather than when mimalloc next
/// looks: a thread that goes idle after a burst (compiling a component) would keep it.
pub fn release_freed_memory() {
    // SAFETY: collects the calling thread's own heap.
    unsafe { mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libmimalloc_sys::mi_option_get;

    /// The number names the option meant: it still holds the purge delay's default (1000 ms,
    /// in mimalloc's options.c), which no neighbouring option shares.
    #[test]
    fn the_option_number_names_the_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads a global option.
        assert_eq!(unsafe { mi_option_get(PURGE_DELAY) }, 1000);
    }
}
