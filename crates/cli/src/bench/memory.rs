//! Memory: the host memory (RSS) of an idle VM's processes (QEMU and the supervisor) against
//! the guest memory it touched, i.e. what a sandbox costs the host beyond its guest's own use.

use std::time::Duration;

use anyhow::Result;
use smolvm::SmolVm;

/// The target, on the overhead (host RSS beyond the guest-touched RAM).
pub(super) const TARGET: &str = "overhead <= 30 MiB";

/// Resident memory of an idle VM, in KiB.
pub(super) struct Memory {
    /// QEMU, guest RAM included.
    pub(super) qemu_rss: u64,
    /// The supervisor.
    pub(super) supervisor_rss: u64,
    /// QEMU's resident part of its guest RAM mapping.
    pub(super) guest_touched: u64,
}

/// Lets `vm` (started, and idle from now on) settle, then reads the memory of its host
/// processes.
pub(super) fn measure(vm: &SmolVm) -> Result<Memory> {
    std::thread::sleep(Duration::from_millis(500));
    let (supervisor_pid, qemu_pid) = vm.host_pids()?;
    let (qemu_rss, guest_touched) = rss_kib(qemu_pid, vm.config().mem_size_mib);
    let (supervisor_rss, _) = rss_kib(supervisor_pid, 0);
    Ok(Memory {
        qemu_rss,
        supervisor_rss,
        guest_touched,
    })
}

impl Memory {
    /// QEMU and the supervisor, KiB.
    pub(super) fn host_kib(&self) -> u64 {
        self.qemu_rss + self.supervisor_rss
    }

    /// Host RSS beyond the guest-touched RAM, MiB.
    pub(super) fn overhead_mib(&self) -> f64 {
        (self.host_kib().saturating_sub(self.guest_touched)) as f64 / 1024.0
    }

    /// Host RSS over guest-touched RAM.
    pub(super) fn ratio(&self) -> f64 {
        self.host_kib() as f64 / self.guest_touched.max(1) as f64
    }

    /// The `memory` object of the JSON output.
    pub(super) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "host_rss_mib": self.host_kib() as f64 / 1024.0,
            "qemu_rss_mib": self.qemu_rss as f64 / 1024.0,
            "supervisor_rss_mib": self.supervisor_rss as f64 / 1024.0,
            "guest_touched_mib": self.guest_touched as f64 / 1024.0,
            "overhead_mib": self.overhead_mib(),
            "ratio": self.ratio(),
            "target": TARGET,
        })
    }
}

/// Resident memory (KiB) of `pid`, and of its mapping of guest RAM (`guest_mib` large).
fn rss_kib(pid: u32, guest_mib: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let total = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let guest_kib = u64::from(guest_mib) * 1024;
    let mut guest_rss = 0;
    let mut in_guest_ram = false;
    for l in smaps.lines() {
        if let Some(v) = l.strip_prefix("Size:") {
            in_guest_ram =
                v.trim().trim_end_matches("kB").trim().parse::<u64>().ok() == Some(guest_kib);
        } else if let (true, Some(v)) = (in_guest_ram, l.strip_prefix("Rss:")) {
            guest_rss += v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    (total, guest_rss)
}
