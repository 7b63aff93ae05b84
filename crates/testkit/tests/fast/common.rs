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
pub use smolvm_sys::process::pid_alive as alive;

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
pub use smolvm_sys::process::pids_with_cmdline as processes_mentioning;
