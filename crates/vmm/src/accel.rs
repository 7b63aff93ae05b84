//! Which accelerator a VM gets (KVM or software emulation), and the host TSC frequency a
//! software-emulated guest is told.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use std::path::Path;

/// Which accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl Accel {
    /// The QEMU name.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The accelerator choice and why it was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelChoice {
    /// What will be used.
    pub accel: Accel,
    /// Why (shown by `smolvm doctor` and logged at start).
    pub reason: String,
}

/// Chooses KVM when `/dev/kvm` can be opened read-write *and* the CPU shows vmx/svm, TCG
/// otherwise; `SMOLVM_ACCEL=kvm|tcg` overrides. The CPU-flag check matters: nested setups
/// expose a `/dev/kvm` on which a stock kernel fails with "KVM internal error".
pub fn choose_accel() -> AccelChoice {
    match std::env::var("SMOLVM_ACCEL").as_deref() {
        Ok("kvm") => {
            return AccelChoice {
                accel: Accel::Kvm,
                reason: "forced by SMOLVM_ACCEL=kvm".into(),
            }
        }
        Ok("tcg") => {
            return AccelChoice {
                accel: Accel::Tcg,
                reason: "forced by SMOLVM_ACCEL=tcg".into(),
            }
        }
        _ => {}
    }
    let kvm_open = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm");
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let virt_flag = cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags"))
        .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    match (kvm_open, virt_flag) {
        (Ok(_), true) => AccelChoice { accel: Accel::Kvm, reason: "/dev/kvm is usable and the CPU has vmx/svm".into() },
        (Err(e), _) => AccelChoice { accel: Accel::Tcg, reason: format!("/dev/kvm cannot be opened ({e}): software emulation") },
        (Ok(_), false) => AccelChoice {
            accel: Accel::Tcg,
            reason: "/dev/kvm exists but the CPU shows no vmx/svm (nested or paravirtual KVM): software emulation".into(),
        },
    }
}

/// Cached host facts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HostFacts {
    tsc_khz: u64,
    boot_id: String,
}

/// The host's TSC frequency in kHz, measured once per host boot and cached.
///
/// Under TCG the guest reads the host's TSC directly, and the guest kernel's calibration of it
/// against the PIT fails at random on microvm; passing `tsc_early_khz=` removes those hangs.
/// `cache` is a file of the caller's (the data directory's host facts).
pub fn tsc_khz(cache: &Path) -> u64 {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    if let Ok(text) = std::fs::read_to_string(cache) {
        if let Ok(facts) = serde_json::from_str::<HostFacts>(&text) {
            if facts.boot_id == boot_id && facts.tsc_khz > 0 {
                return facts.tsc_khz;
            }
        }
    }
    let tsc_khz = measure_tsc_khz();
    let facts = HostFacts { tsc_khz, boot_id };
    if let Ok(json) = serde_json::to_vec(&facts) {
        let _ = smolvm_sys::fs::write_atomic(cache, &json);
    }
    tsc_khz
}

#[cfg(target_arch = "x86_64")]
fn measure_tsc_khz() -> u64 {
    // SAFETY: rdtsc has no preconditions on x86_64.
    let read = || unsafe { core::arch::x86_64::_rdtsc() };
    let mut samples: Vec<u64> = (0..3)
        .map(|_| {
            let (t0, c0) = (Instant::now(), read());
            std::thread::sleep(Duration::from_millis(20));
            let (c1, t1) = (read(), Instant::now());
            (c1 - c0) * 1_000_000 / (t1 - t0).as_micros().max(1) as u64 / 1000
        })
        .collect();
    samples.sort_unstable();
    samples[1]
}

#[cfg(not(target_arch = "x86_64"))]
fn measure_tsc_khz() -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accel_override_wins() {
        // The variable is read at call time; set and restore it around one call.
        std::env::set_var("SMOLVM_ACCEL", "tcg");
        let choice = choose_accel();
        std::env::remove_var("SMOLVM_ACCEL");
        assert_eq!(choice.accel, Accel::Tcg);
        assert!(choice.reason.contains("SMOLVM_ACCEL"));
    }

    #[test]
    fn tsc_measurement_is_plausible() {
        let khz = measure_tsc_khz();
        assert!((500_000..10_000_000).contains(&khz), "{khz} kHz");
    }
}
