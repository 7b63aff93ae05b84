//! Snapshots, restores, pause/resume and template starts, on real VMs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use smolvm::{
    DataDir, Error, RestoreOptions, SmolVm, SnapshotMeta, SnapshotOptions, VmConfig, VmState,
};

fn minimal() -> VmConfig {
    VmConfig {
        image: Some("minimal".into()),
        ..VmConfig::default()
    }
}

/// Removes the snapshot when the test ends, however it ends.
struct SnapshotGuard(DataDir, String);

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        let _ = smolvm::snapshot::remove(&self.0, &self.1);
    }
}

fn take(vm: &SmolVm, keep_paused: bool) -> (SnapshotMeta, SnapshotGuard) {
    let meta = vm
        .snapshot(&SnapshotOptions {
            id: None,
            keep_paused,
        })
        .expect("snapshot");
    let guard = SnapshotGuard(DataDir::from_env(), meta.id.clone());
    (meta, guard)
}

fn restore(id: &str) -> SmolVm {
    SmolVm::restore(DataDir::from_env(), id, &RestoreOptions::default()).expect("restore")
}

/// The number `command` prints. Counters rewrite their file in place, so a read may catch
/// it empty: read again.
fn number(vm: &SmolVm, command: &str) -> u64 {
    let mut last = String::new();
    for _ in 0..50 {
        last = vm.run(command).unwrap().output().trim().to_string();
        if let Ok(n) = last.parse() {
            return n;
        }
    }
    panic!("{command}: {last:?}")
}

#[test]
fn a_process_files_and_variables_survive_a_restore_and_the_source_keeps_running() {
    let vm = common::vm_with(minimal());
    vm.set_env_vars(&[("KEPT".to_string(), "yes".to_string())].into(), true)
        .unwrap();
    vm.run("echo payload > /root/data.txt").unwrap();
    // A counter that outlives the command that started it.
    vm.run(
        "(i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done) >/dev/null 2>&1 &",
    )
    .unwrap();
    assert!(common::eventually(Duration::from_secs(10), || number(
        &vm,
        "cat /tmp/count 2>/dev/null || echo 0"
    ) > 0));
    let (meta, _guard) = take(&vm, false);
    let stats = meta.stats.expect("stats");
    assert!(stats.memory_bytes > 0 && stats.raw_bytes > stats.memory_bytes);

    let copy = restore(&meta.id);
    assert_eq!(copy.status(), VmState::Running);
    assert_ne!(copy.vm_id(), vm.vm_id());
    assert_eq!(copy.run("cat /root/data.txt").unwrap().output(), "payload");
    assert_eq!(copy.run("echo $KEPT").unwrap().output(), "yes");
    assert_eq!(copy.run("hostname").unwrap().output(), copy.vm_id());
    let before = number(&copy, "cat /tmp/count");
    assert!(
        common::eventually(Duration::from_secs(10), || number(&copy, "cat /tmp/count")
            > before),
        "the counter stopped in the restored VM"
    );
    // The source carries on, untouched by its copy.
    copy.run("echo changed > /root/data.txt").unwrap();
    assert_eq!(vm.run("cat /root/data.txt").unwrap().output(), "payload");
    let source_before = number(&vm, "cat /tmp/count");
    assert!(common::eventually(Duration::from_secs(10), || number(
        &vm,
        "cat /tmp/count"
    )
        > source_before));
}

#[test]
fn five_restored_sandboxes_are_distinct_isolated_machines_with_the_right_time() {
    let vm = common::vm_with(minimal());
    vm.run("echo base > /root/who").unwrap();
    let (meta, _guard) = take(&vm, false);
    let copies: Vec<SmolVm> = (0..5).map(|_| restore(&meta.id)).collect();
    let mut uuids = BTreeSet::new();
    let mut hostnames = BTreeSet::new();
    let mut machine_ids = BTreeSet::new();
    for (i, copy) in copies.iter().enumerate() {
        copy.run(&format!("echo {i} > /root/who")).unwrap();
        let stream = copy
            .run("for i in 1 2 3; do cat /proc/sys/kernel/random/uuid; done")
            .unwrap();
        for uuid in stream.output().lines() {
            assert!(uuids.insert(uuid.to_string()), "uuid {uuid} seen twice");
        }
        hostnames.insert(copy.run("hostname").unwrap().output().to_string());
        machine_ids.insert(
            copy.run("cat /etc/machine-id")
                .unwrap()
                .output()
                .to_string(),
        );
        let guest_now: u64 = copy
            .run("date +%s")
            .unwrap()
            .output()
            .trim()
            .parse()
            .unwrap();
        let host_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            guest_now.abs_diff(host_now) <= 2,
            "guest clock {guest_now} vs host {host_now}"
        );
    }
    assert_eq!(hostnames.len(), 5);
    assert_eq!(machine_ids.len(), 5);
    for (i, copy) in copies.iter().enumerate() {
        assert_eq!(copy.run("cat /root/who").unwrap().output(), i.to_string());
    }
    assert_eq!(vm.run("cat /root/who").unwrap().output(), "base");
}

#[test]
fn pause_stops_a_busy_loop_and_resume_continues_it() {
    let vm = common::vm_with(minimal());
    vm.run("(i=0; while true; do i=$((i+1)); echo $i > /tmp/n; done) >/dev/null 2>&1 &")
        .unwrap();
    assert!(common::eventually(Duration::from_secs(10), || number(
        &vm,
        "cat /tmp/n 2>/dev/null || echo 0"
    ) > 10));
    vm.pause().unwrap();
    assert_eq!(vm.status(), VmState::Paused);
    let err = vm.run("cat /tmp/n").unwrap_err();
    assert!(
        matches!(&err, Error::VmNotRunning { state, .. } if state == "paused"),
        "{err}"
    );
    let info = smolvm::sandbox::find(&DataDir::from_env(), vm.vm_id()).unwrap();
    assert_eq!(info.state, "paused");
    vm.pause().unwrap();
    // The guest's CPU is stopped: the host sees QEMU's CPU time stand (nearly) still.
    let (_, qemu) = vm.host_pids().unwrap();
    let cpu = || qemu_cpu_ticks(qemu);
    let start = cpu();
    std::thread::sleep(Duration::from_millis(1000));
    let used = cpu() - start;
    assert!(used < 30, "QEMU used {used} ticks while paused");
    vm.resume().unwrap();
    assert_eq!(vm.status(), VmState::Running);
    let after_resume = number(&vm, "cat /tmp/n");
    assert!(common::eventually(Duration::from_secs(10), || number(
        &vm,
        "cat /tmp/n"
    )
        > after_resume));
    // A paused VM stops (and is deleted) cleanly.
    vm.pause().unwrap();
    vm.delete().unwrap();
}

/// The snapshot the VM was started from, per its launch spec.
fn restored_from(vm: &SmolVm) -> Option<std::path::PathBuf> {
    vm.restored_from()
}

/// User plus system CPU time of a process, in clock ticks.
fn qemu_cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn a_template_start_gives_the_same_results_as_a_cold_boot() {
    let data = DataDir::from_env();
    let config = VmConfig {
        env_vars: [("BOOT_VAR".to_string(), "at boot".to_string())].into(),
        ..minimal()
    };
    let valid = config.clone().validate(&data).unwrap();
    let template = smolvm::template::ensure(&data, &valid, None).unwrap();
    assert!(
        template.is_some(),
        "the default minimal shape has a template"
    );
    let mut warm = SmolVm::with_data_dir(config.clone(), data.clone()).unwrap();
    warm.set_cold(false);
    warm.start().unwrap();
    let mut cold = SmolVm::with_data_dir(config, data).unwrap();
    cold.set_cold(true);
    cold.start().unwrap();
    let script = "echo $BOOT_VAR; echo err >&2; hostname | grep -c -- \"$(cat /proc/sys/kernel/hostname)\"; \
                  id -u; pwd; ls /root | wc -l; exit 7";
    for vm in [&warm, &cold] {
        let out = vm.run(script).unwrap();
        assert_eq!(out.exit_code, 7, "{}", vm.vm_id());
        assert_eq!(out.output(), "at boot\n1\n0\n/root\n0");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
        assert_eq!(vm.run("hostname").unwrap().output(), vm.vm_id());
        assert_eq!(
            vm.list_env_vars().unwrap(),
            BTreeMap::from([("BOOT_VAR".to_string(), "at boot".to_string())])
        );
    }
    assert!(restored_from(&warm).is_some(), "started from the template");
    assert!(restored_from(&cold).is_none());
    // The configuration reads as configured, whichever way the VM started.
    assert_eq!(warm.config().kernel_path, cold.config().kernel_path);
    assert_eq!(warm.config().rootfs, cold.config().rootfs);
}

#[test]
fn a_disk_sandbox_snapshot_carries_its_disk_and_copies_do_not_share_it() {
    let vm = common::vm_with(VmConfig {
        image: Some("debian".into()),
        ..VmConfig::default()
    });
    vm.run("echo on-disk > /root/file && sync").unwrap();
    let (meta, _guard) = take(&vm, false);
    assert!(meta.stats.as_ref().unwrap().disk_bytes > 0);
    vm.run("echo later > /root/file").unwrap();
    let a = restore(&meta.id);
    let b = restore(&meta.id);
    assert_eq!(a.run("cat /root/file").unwrap().output(), "on-disk");
    a.run("echo a > /root/file && sync").unwrap();
    assert_eq!(b.run("cat /root/file").unwrap().output(), "on-disk");
    assert_eq!(vm.run("cat /root/file").unwrap().output(), "later");
    // The copies' disks work beyond the page cache: write and read back a fresh file.
    b.run("dd if=/dev/urandom of=/root/blob bs=1M count=4 2>/dev/null && sync && echo 3 > /proc/sys/vm/drop_caches")
        .unwrap();
    assert_eq!(b.run("wc -c < /root/blob").unwrap().output(), "4194304");
}

#[test]
fn a_corrupt_or_truncated_snapshot_fails_clearly_and_leaves_nothing() {
    let data = DataDir::from_env();
    let vm = common::vm_with(minimal());
    let (meta, _guard) = take(&vm, false);
    let memory = smolvm::snapshot::snapshot_dir(&data, &meta.id).join("memory.zst");
    let bytes = std::fs::read(&memory).unwrap();
    for (what, damaged) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("corrupt", {
            let mut b = bytes.clone();
            let middle = b.len() / 2;
            for byte in &mut b[middle..middle + 4096] {
                *byte ^= 0x5a;
            }
            b
        }),
    ] {
        std::fs::write(&memory, &damaged).unwrap();
        let name = format!("bad-{what}-{}", std::process::id());
        let err = SmolVm::restore(
            data.clone(),
            &meta.id,
            &RestoreOptions {
                name: Some(name.clone()),
                persistent: false,
            },
        )
        .err()
        .unwrap_or_else(|| panic!("a {what} snapshot restored"));
        let message = err.to_string();
        assert!(
            message.contains("memory.zst") || message.contains("could not load"),
            "{what}: {message}"
        );
        assert!(!data.vm_dir(&name).exists(), "{what}: VM directory left");
        assert!(
            smolvm::sandbox::find(&data, &name).is_err(),
            "{what}: still registered"
        );
        // The supervisor names the VM's directory, QEMU the VM (`-name smolvm-NAME`).
        assert!(
            common::processes_mentioning(&format!("vms/{name}/")).is_empty()
                && common::processes_mentioning(&format!("smolvm-{name}\0")).is_empty(),
            "{what}: processes left"
        );
    }

    // Taken by another QEMU build: refused up front, naming why.
    let meta_path = smolvm::snapshot::snapshot_dir(&data, &meta.id).join("snapshot.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    json["compat"]["qemu"] = "/usr/bin/qemu-system-x86_64 size=1 mtime=0.0 ino=1".into();
    std::fs::write(&meta_path, serde_json::to_vec(&json).unwrap()).unwrap();
    let err = SmolVm::restore(data.clone(), &meta.id, &RestoreOptions::default())
        .err()
        .expect("a snapshot of another QEMU restored");
    let message = err.to_string();
    assert!(
        message.contains("cannot be restored on this host") && message.contains("QEMU build"),
        "{message}"
    );
}

#[test]
fn snapshots_are_serialised_and_a_failed_one_leaves_the_vm_running_and_nothing_listed() {
    let data = DataDir::from_env();
    let vm = std::sync::Arc::new(common::vm_with(minimal()));
    // Two at once: both complete or one is refused, never a mix.
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let vm = std::sync::Arc::clone(&vm);
            std::thread::spawn(move || vm.snapshot(&SnapshotOptions::default()))
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut ok = 0;
    for result in &results {
        match result {
            Ok(meta) => {
                ok += 1;
                smolvm::snapshot::remove(&data, &meta.id).unwrap();
            }
            Err(e) => assert!(e.to_string().contains("already being taken"), "{e}"),
        }
    }
    assert!(ok >= 1);

    // An id that exists is refused before anything happens.
    let (meta, _guard) = take(&vm, false);
    let err = vm
        .snapshot(&SnapshotOptions {
            id: Some(meta.id.clone()),
            keep_paused: false,
        })
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = vm
        .snapshot(&SnapshotOptions {
            id: Some("Bad/Id".into()),
            keep_paused: false,
        })
        .unwrap_err();
    assert!(err.to_string().contains("snapshot_id"), "{err}");

    // keep_paused leaves it paused; resume brings it back.
    let (_paused_meta, _paused_guard) = take(&vm, true);
    assert_eq!(vm.status(), VmState::Paused);
    vm.resume().unwrap();
    assert_eq!(vm.run("echo back").unwrap().output(), "back");
    assert!(smolvm::snapshot::list(&data)
        .iter()
        .all(|m| !m.id.starts_with('.')));
}

#[test]
fn a_paused_sandbox_can_be_snapshotted_twice_and_resumed() {
    let vm = common::vm_with(minimal());
    vm.run("echo kept > /root/f").unwrap();
    vm.pause().unwrap();
    let (first, _g1) = take(&vm, false);
    let (second, _g2) = take(&vm, false);
    // Taken while paused, it stays paused until asked.
    assert_eq!(vm.status(), VmState::Paused);
    vm.resume().unwrap();
    assert_eq!(vm.run("cat /root/f").unwrap().output(), "kept");
    for meta in [&first, &second] {
        let copy = restore(&meta.id);
        assert_eq!(copy.run("cat /root/f").unwrap().output(), "kept");
    }
}

#[test]
fn a_template_is_rebuilt_when_its_image_changes() {
    // A private data directory: its own copy of the minimal image, the real kernel.
    let real = DataDir::from_env();
    let root = std::path::PathBuf::from(format!("/tmp/smolvm-tpl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("images/minimal")).unwrap();
    std::os::unix::fs::symlink(real.kernel_dir(), root.join("kernel")).unwrap();
    for entry in std::fs::read_dir(real.image_dir("minimal"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(
            entry.path(),
            root.join("images/minimal").join(entry.file_name()),
        )
        .unwrap();
    }
    let data = DataDir::at(&root);
    let config = minimal().validate(&data).unwrap();
    assert!(smolvm::template::find_current(&data, &config).is_none());
    let dir = smolvm::template::ensure(&data, &config, None)
        .unwrap()
        .unwrap();
    let first = smolvm::snapshot::read_meta(&dir).unwrap();

    // The image is rebuilt (same content, new file): the template no longer matches.
    let rootfs = config.rootfs.path().to_path_buf();
    let fresh = rootfs.with_extension("new");
    std::fs::copy(&rootfs, &fresh).unwrap();
    std::fs::rename(&fresh, &rootfs).unwrap();
    assert!(smolvm::template::find_current(&data, &config).is_none());
    let mut vm = SmolVm::with_data_dir(minimal(), data.clone()).unwrap();
    vm.set_cold(false);
    vm.start().unwrap();
    let second = smolvm::snapshot::read_meta(&dir).unwrap();
    assert_ne!(first.template_fingerprint, second.template_fingerprint);
    assert!(smolvm::template::find_current(&data, &config).is_some());
    assert_eq!(
        restored_from(&vm),
        Some(dir.clone()),
        "started from the new template"
    );
    assert_eq!(vm.run("echo ok").unwrap().output(), "ok");
    drop(vm);

    // A damaged template never makes a sandbox unusable: it boots cold and the template is
    // discarded, to be rebuilt by the next start.
    let raw = dir.join("memory.raw");
    let mut bytes = std::fs::read(&raw).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&raw, &bytes).unwrap();
    let mut vm = SmolVm::with_data_dir(minimal(), data.clone()).unwrap();
    vm.set_cold(false);
    vm.start().unwrap();
    assert_eq!(restored_from(&vm), None, "booted cold");
    assert_eq!(vm.run("echo ok").unwrap().output(), "ok");
    assert!(!dir.exists(), "the damaged template was discarded");
    drop(vm);
    std::fs::remove_dir_all(&root).unwrap();
}
