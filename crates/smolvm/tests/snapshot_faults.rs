//! Snapshots that fail part-way: a full disk, and the supervisor killed while writing. Neither
//! may list a partial snapshot; a full disk must leave the sandbox running.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use smolvm::{DataDir, SmolVm, SnapshotOptions, VmConfig};

fn minimal() -> VmConfig {
    VmConfig {
        image: Some("minimal".into()),
        ..VmConfig::default()
    }
}

/// A private data directory sharing the real kernel and images, with a 2 MiB filesystem for
/// snapshots. Unmounted and removed on drop.
struct TinyDisk {
    root: PathBuf,
}

impl TinyDisk {
    fn new() -> Self {
        let real = DataDir::from_env();
        let root = PathBuf::from(format!("/tmp/smolvm-full-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("snapshots")).unwrap();
        for entry in ["kernel", "images", "host.json"] {
            let target = real.root().join(entry);
            if target.exists() {
                std::os::unix::fs::symlink(&target, root.join(entry)).unwrap();
            }
        }
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(root.join("snapshots"))
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        Self { root }
    }
}

impl Drop for TinyDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg(self.root.join("snapshots"))
            .status();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_full_disk_fails_the_snapshot_and_the_sandbox_keeps_running() {
    let disk = TinyDisk::new();
    let data = DataDir::at(&disk.root);
    let mut vm = SmolVm::with_data_dir(minimal(), data.clone()).unwrap();
    vm.set_cold(true);
    vm.start().unwrap();
    vm.run("echo before > /root/f").unwrap();
    let err = vm.snapshot(&SnapshotOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("No space left") || message.contains("os error 28"),
        "{message}"
    );
    assert!(smolvm::snapshot::list(&data).is_empty());
    assert!(
        entries(&data.snapshots_dir()).is_empty(),
        "left behind: {:?}",
        entries(&data.snapshots_dir())
    );
    assert_eq!(vm.run("cat /root/f").unwrap().output(), "before");
    vm.delete().unwrap();
}

#[test]
fn a_supervisor_killed_mid_snapshot_lists_no_partial_snapshot() {
    let data = DataDir::from_env();
    let vm = std::sync::Arc::new(common::vm_with(minimal()));
    let (supervisor, qemu) = vm.host_pids().unwrap();
    // Incompressible memory, so that the snapshot takes long enough to be caught mid-way.
    vm.run("dd if=/dev/urandom of=/tmp/noise bs=1M count=96 2>/dev/null")
        .unwrap();
    let id = format!("killed-{}", std::process::id());
    let snapshotting = {
        let (vm, id) = (std::sync::Arc::clone(&vm), id.clone());
        std::thread::spawn(move || {
            vm.snapshot(&SnapshotOptions {
                id: Some(id),
                keep_paused: false,
            })
        })
    };
    let partial = format!(".{id}.partial-{supervisor}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !entries(&data.snapshots_dir()).contains(&partial) {
        assert!(
            std::time::Instant::now() < deadline,
            "the snapshot never started"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill with plain integers; the pid is this test's VM's supervisor.
    unsafe { libc::kill(supervisor as i32, libc::SIGKILL) };
    let result = snapshotting.join().unwrap();
    assert!(result.is_err(), "the snapshot completed before the kill");
    assert!(smolvm::snapshot::find(&data, &id).is_err());
    // Listing removes what the dead supervisor left.
    assert!(smolvm::snapshot::list(&data).iter().all(|m| m.id != id));
    assert!(!entries(&data.snapshots_dir()).contains(&partial));
    assert!(common::eventually(Duration::from_secs(5), || {
        !common::process_alive(qemu)
    }));
    let state = smolvm::sandbox::find(&data, vm.vm_id()).map(|s| s.state);
    assert!(
        matches!(state, Ok(smolvm::SandboxState::Crashed) | Err(_)),
        "{state:?}"
    );
}
