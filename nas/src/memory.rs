//! Process memory: allocator tuning for the many large, short-lived tensors of a training
//! step, and the peak resident memory that the benchmarks report.

/// Keeps freed tensor buffers in the process heap for reuse instead of handing them back to
/// the kernel; returns whether the setting took effect.
///
/// glibc serves every block above its mmap threshold with a fresh mapping and unmaps it on
/// free, and trims the top of the heap. A search step allocates and frees gigabytes of 1-16 MB
/// tensors, so each step faulted in new zeroed pages: in the paper's search setting 5.7
/// million page faults and 51 s of system time in three steps. With the threshold at glibc's
/// maximum (32 MiB) and trimming off: 3.0 million faults (nearly all in the first step), 28 s,
/// and a 16% shorter step at the same peak memory. Larger inputs make tensors above even that
/// maximum (a 96x96 training batch of 32 holds 42 MB feature maps): there mmap is switched off
/// altogether, so every block comes from the heap and stays there. One training step of the
/// shipped network at 96 px, batch 32, 2 threads: 1.96 s -> 1.39 s, and no page faults after
/// the first steps. Elsewhere (other C libraries) this does nothing.
pub fn keep_freed_tensor_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called before the
        // heavy allocations start and glibc serialises it against concurrent malloc calls.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`; `None` elsewhere).
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn peak_resident_memory_is_read_on_linux() {
        assert!(super::peak_rss_mb().is_some_and(|mb| mb > 0.0));
    }

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_accepts_the_settings() {
        assert!(super::keep_freed_tensor_memory());
    }
}
