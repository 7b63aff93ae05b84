//! Other processes: pid files, liveness, signals, and what little `/proc` tells about them.

use std::path::Path;

/// Reads a pid file; `None` when absent or malformed.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is a live process (not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and may contain spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Sends `signal` to `pid`. The caller must know that `pid` is still the process it means
/// (its own unreaped child, or one checked with [`cmdline_contains`] just before).
pub fn kill(pid: u32, signal: i32) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: kill takes plain integers and has no memory effects.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `pid`'s command line contains `text` (guards against signalling a recycled pid).
pub fn cmdline_contains(pid: u32, text: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(text))
}

/// Total host memory in MiB (from `/proc/meminfo`).
pub fn total_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_dead_pid_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX - 1));
    }

    #[test]
    fn signal_zero_reaches_self_and_not_a_missing_pid() {
        kill(std::process::id(), 0).expect("self");
        assert!(kill(u32::MAX - 1, 0).is_err());
    }

    #[test]
    fn own_cmdline_names_the_test_binary() {
        let exe = std::env::args().next().unwrap_or_default();
        assert!(cmdline_contains(std::process::id(), &exe));
        assert!(!cmdline_contains(std::process::id(), "no such text \u{1}"));
        assert!(total_memory_mib() > 0);
    }
}
