//! The duties of PID 1 in a SmolVM guest, for the binary's guest path: preparing the
//! machine, finding the host's port, powering off.
//!
//! Each function that changes the machine checks that the process is PID 1 and otherwise
//! does nothing of the kind (see each), so that none of them can touch a host.

use std::process;
use std::time::Duration;

pub use crate::init::{cmdline_flag, cmdline_value};
pub use crate::port::{open_agent_port, PortReader};

use crate::{init, sys};

fn is_pid1() -> bool {
    process::id() == 1
}

/// As PID 1: mounts proc, sys, dev, devpts, shm, /tmp and /run, links `/dev/fd` and the
/// standard streams, and sets the hostname given on the kernel command line
/// (`smolvm.hostname=`). Does nothing in any other process.
pub fn prepare() {
    if is_pid1() {
        init::prepare_guest();
    }
}

/// As PID 1: flushes every filesystem and resets the machine (QEMU, started with
/// `-no-reboot` and `reboot=t` on the guest command line, then exits). In any other process
/// it only exits with status 1.
pub fn reboot_now() -> ! {
    if !is_pid1() {
        process::exit(1);
    }
    sys::reboot_now()
}

/// The answer to `Shutdown` as PID 1: ends every process of the guest (SIGTERM, then SIGKILL
/// 20 ms later), flushes the filesystems and resets the machine. In any other process (the
/// agent run by hand) it exits with status 0 and signals nothing.
pub fn power_off() -> ! {
    if !is_pid1() {
        process::exit(0);
    }
    // SAFETY: kill with pid -1 signals every process except PID 1 itself.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(20));
    // SAFETY: as above.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    sys::reboot_now()
}
