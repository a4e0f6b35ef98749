//! Keeping the agent's resident memory small on every host (its budget is
//! 15 MB): glibc's allocator otherwise keeps an arena per thread and holds
//! on to freed memory. No-ops on other C libraries.

/// One malloc arena, whatever the number of threads (librdkafka, the
/// blocking pool and the file watcher would each get their own); blocks of
/// 64 KiB and more (a package database being parsed) mapped on their own
/// and unmapped when freed; free memory at the top of the heap returned
/// beyond 128 KiB. Measured with `agent/benches/footprint.sh`: 16.1 MB →
/// 14.0 MB resident in the steady state.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before
    // threads are started.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
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

/// A regular expression whose lazy DFA keeps a small cache (256 KiB rather
/// than the 2 MiB default): the agent's patterns are simple and applied to
/// short lines, and every pattern's cache is resident memory on every host.
pub fn regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(pattern).dfa_size_limit(256 << 10).build()
}
