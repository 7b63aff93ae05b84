//! Helpers shared by the fast-tier tests: every sandbox runs on the fake backend (the agent as
//! a host process), in a temporary data directory of its own.

use std::time::{Duration, Instant};

pub use smolvm_testkit::TestEnv;

/// A fresh environment using this crate's own fake supervisor and agent.
pub fn env() -> TestEnv {
    TestEnv::with_binaries(
        env!("CARGO_BIN_EXE_smolvm-fake-supervisor"),
        env!("CARGO_BIN_EXE_smolvm-fake-agent"),
    )
    .expect("creating a test environment")
}

/// Whether a process with this pid exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of live processes whose command line mentions `needle` (a VM's directory).
pub fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}
