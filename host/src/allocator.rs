//! The process's allocator: mimalloc, which serves a request's many small, short-lived
//! allocations (hyper, tokio, wasmtime's component glue), often freed on another thread than
//! the one that made them, faster than glibc's malloc. Set up so that peak RSS stays at
//! glibc's (figures in bench/README.md): built not to ask for transparent huge pages on its
//! arenas (the `no_thp` feature; with them each touched 2 MiB became resident whole), and
//! purging freed memory at once.

use libmimalloc_sys::{mi_option_set, mi_option_t};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's number for its purge delay option, from `mi_option_e` in the mimalloc 3 header
/// that the pinned libmimalloc-sys builds (its Rust constants do not name it).
const PURGE_DELAY: mi_option_t = 15;

/// Freed memory goes back to the system at once, not after mimalloc's default second:
/// otherwise compiling a component at start-up peaks well above glibc's RSS. Called first
/// thing in `main`, before any other thread exists (options are not thread-safe to set).
pub fn tune() {
    // SAFETY: a plain setter of a global option, on the only thread.
    unsafe { mi_option_set(PURGE_DELAY, 0) }
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
