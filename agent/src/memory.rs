//! Keeping the agent's resident memory small on every host (its budget is
//! 15 MB): glibc's allocator otherwise keeps an arena per thread and holds
//! on to freed memory. No-ops on other C libraries.

/// At most two malloc arenas, whatever the number of threads (librdkafka,
/// the blocking pool and the file watcher each have their own).
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before
    // threads are started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Returns freed heap memory to the system.
pub fn release_free() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}
