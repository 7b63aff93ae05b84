//! Processes: other ones (pid files, liveness, signals, and what little `/proc` tells about
//! them), children (a session of their own) and this one (user id, umask, limits, CPU time).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

/// Sends `signal` to every process of group `pgid` (same caveat as [`kill`]).
pub fn kill_group(pgid: u32, signal: i32) -> std::io::Result<()> {
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|g| *g > 1)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: kill takes plain integers and has no memory effects; a negative pid names the
    // group, and groups 0 and 1 (ours, everything) are refused above.
    if unsafe { libc::kill(-pgid, signal) } == 0 {
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

/// Live processes (not zombies) whose command line contains `text`: how tests find what a
/// VM left running.
pub fn pids_with_cmdline(text: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| cmdline_contains(*pid, text) && pid_alive(*pid))
        .collect()
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

/// This process's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sets this process's umask to `mask` and returns the previous one. The umask belongs to the
/// whole process: only a program's `main` should set it (a library must not), best before
/// other threads exist.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Makes the children `command` spawns lead a session of their own (`setsid` between fork
/// and exec): they have no controlling terminal, so a Ctrl-C typed at this process's
/// terminal never reaches them.
pub fn new_session(command: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: setsid is one, and nothing is allocated. It cannot fail in a freshly
    // forked child (which never leads a process group), so its result is not looked at.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    }
}

/// This process's limit on open descriptors (`RLIMIT_NOFILE`): `(soft, hard)`.
pub fn open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into `limit`, which outlives the call.
    crate::check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    Ok((limit.rlim_cur, limit.rlim_max))
}

/// Sets this process's soft limit on open descriptors (`RLIMIT_NOFILE`) to `soft`, keeping
/// the hard limit; above the hard limit it fails (`EINVAL`). Descriptors already open stay
/// open; opening more than the limit fails with `EMFILE`.
pub fn set_open_files_limit(soft: u64) -> std::io::Result<()> {
    let (_, hard) = open_files_limit()?;
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads one rlimit from `limit`, which outlives the call.
    crate::check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }).map(|_| ())
}

/// The CPU time this process has used so far, user and system together (`getrusage`).
pub fn cpu_time() -> Duration {
    // SAFETY: rusage is plain old data, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes one rusage into `usage`, which outlives the call; with
    // RUSAGE_SELF and a valid pointer it cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let time = |t: libc::timeval| {
        Duration::new(
            t.tv_sec.max(0) as u64,
            (t.tv_usec.max(0) as u32).saturating_mul(1000),
        )
    };
    time(usage.ru_utime) + time(usage.ru_stime)
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
    fn a_group_is_signalled_and_the_special_groups_are_refused() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep");
        kill_group(child.id(), libc::SIGKILL).expect("its own group");
        use std::os::unix::process::ExitStatusExt;
        let status = child.wait().expect("reaped");
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert!(kill_group(0, 0).is_err() && kill_group(1, 0).is_err());
    }

    #[test]
    fn signal_zero_reaches_self_and_not_a_missing_pid() {
        kill(std::process::id(), 0).expect("self");
        assert!(kill(u32::MAX - 1, 0).is_err());
    }

    #[test]
    fn a_child_is_found_by_its_command_line_until_it_is_gone() {
        let marker = format!("smolvm-sys-test-{}", std::process::id());
        // A shell waiting in a builtin: one process, which never forks.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read line", &marker])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        // Until the child has exec'd, its command line is still this test binary's.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while pids_with_cmdline(&marker).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pids_with_cmdline(&marker), vec![child.id()]);
        let _ = child.kill();
        let _ = child.wait();
        assert!(pids_with_cmdline(&marker).is_empty());
    }

    #[test]
    fn own_cmdline_names_the_test_binary() {
        let exe = std::env::args().next().unwrap_or_default();
        assert!(cmdline_contains(std::process::id(), &exe));
        assert!(!cmdline_contains(std::process::id(), "no such text \u{1}"));
        assert!(total_memory_mib() > 0);
    }

    #[test]
    fn euid_matches_the_owner_of_a_new_file() {
        use std::os::unix::fs::MetadataExt;
        let path = std::env::temp_dir().join(format!("smolvm-sys-euid-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), euid());
        std::fs::remove_file(&path).unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let uids = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
        assert_eq!(uids.split_whitespace().nth(1), Some(&*euid().to_string()));
    }

    /// Runs in a child process of its own (the umask is process-wide, and other tests here
    /// create files under it).
    #[test]
    #[ignore = "run by set_umask_sets_and_returns_the_mask in a child process"]
    fn umask_child() {
        if std::env::var_os("SMOLVM_SYS_UMASK_CHILD").is_none() {
            return;
        }
        let umask_in_status = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            let field = status
                .lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .unwrap();
            u32::from_str_radix(field.trim(), 8).unwrap()
        };
        let before = set_umask(0o027);
        assert_eq!(umask_in_status(), 0o027);
        assert_eq!(set_umask(0o077), 0o027);
        assert_eq!(umask_in_status(), 0o077);
        assert_eq!(set_umask(before), 0o077);
    }

    #[test]
    fn set_umask_sets_and_returns_the_mask() {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "process::tests::umask_child", "--ignored"])
            .env("SMOLVM_SYS_UMASK_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    fn session_and_pid_of_child(command: &mut Command) -> (String, String) {
        let out = command
            .args(["-c", "echo $$; cut -d' ' -f6 /proc/$$/stat"])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines().map(str::to_string);
        (lines.next().unwrap(), lines.next().unwrap())
    }

    #[test]
    fn new_session_makes_the_child_lead_its_own_session() {
        let (pid, sid) = session_and_pid_of_child(new_session(&mut Command::new("sh")));
        assert_eq!(pid, sid, "the child leads a session");
        let (pid, sid) = session_and_pid_of_child(&mut Command::new("sh"));
        assert_ne!(pid, sid, "without it the child stays in ours");
    }

    #[test]
    fn open_files_limit_is_read_and_set() {
        let (soft, hard) = open_files_limit().unwrap();
        assert!(soft <= hard && soft > 0);
        set_open_files_limit(soft - 1).unwrap();
        assert_eq!(open_files_limit().unwrap(), (soft - 1, hard));
        set_open_files_limit(soft).unwrap();
        assert_eq!(open_files_limit().unwrap(), (soft, hard));
        if hard != libc::RLIM_INFINITY {
            assert!(set_open_files_limit(hard + 1).is_err() || euid() == 0);
        }
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_time();
        let start = std::time::Instant::now();
        let mut x = 0u64;
        // Busy until 20 ms of CPU are counted (on a loaded host that takes longer than 20 ms).
        while cpu_time() - before < Duration::from_millis(20) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no CPU time counted"
            );
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        assert!(cpu_time() >= before, "never goes back");
    }
}
