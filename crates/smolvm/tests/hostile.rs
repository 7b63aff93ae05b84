//! The guest (or a file it influenced) plays against the host, on real VMs: commands that do
//! not read their input or whose output nobody reads, and snapshot directories tampered with.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smolvm::process::SpawnOptions;
use smolvm::{DataDir, RestoreOptions, SmolVm, SnapshotOptions, VmConfig};

fn minimal() -> VmConfig {
    VmConfig {
        image: Some("minimal".into()),
        ..VmConfig::default()
    }
}

/// A command that never reads its stdin, fed far more than any buffer holds from another
/// thread: that writer waits (flow control), while other requests, signals and `stop` go on.
#[test]
fn a_command_ignoring_its_stdin_blocks_nobody_and_stop_finishes() {
    let vm = Arc::new(common::vm_with(minimal()));
    let process = vm
        .spawn(
            "sleep 600",
            &SpawnOptions {
                stdin: true,
                ..SpawnOptions::default()
            },
        )
        .unwrap();
    let input = process.input();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            if input.write_stdin(&chunk).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !writer.is_finished(),
        "64 MiB went into a command that reads nothing"
    );
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(vm.run("echo still here").unwrap().output(), "still here");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    assert!(vm.list_env_vars().is_ok());
    let started = Instant::now();
    vm.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stop took {:?}",
        started.elapsed()
    );
    // The blocked writer is released once the VM is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !writer.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(writer.is_finished(), "the stdin writer is still blocked");
    drop(process);
}

/// A command whose output nobody reads fills its window and then waits; it stalls nobody.
#[test]
fn output_nobody_reads_blocks_nobody() {
    let vm = common::vm_with(minimal());
    let unread = vm
        .spawn("head -c 50000000 /dev/zero", &SpawnOptions::default())
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert_eq!(vm.run("echo ok").unwrap().output(), "ok");
    assert!(started.elapsed() < Duration::from_secs(5));
    // And its output is not lost: reading it all later gives every byte.
    let result = unread.wait().unwrap();
    assert_eq!(result.stdout.len(), 50_000_000);
}

fn snapshot_of_a_debian_vm(tag: &str) -> (DataDir, String) {
    let data = DataDir::from_env();
    let vm = common::vm();
    vm.run("echo kept > /root/kept").unwrap();
    let id = format!("hostile-{tag}-{}", std::process::id());
    vm.snapshot(&SnapshotOptions {
        id: Some(id.clone()),
        keep_paused: false,
    })
    .unwrap();
    (data, id)
}

fn restore(data: &DataDir, id: &str) -> String {
    match SmolVm::restore(data.clone(), id, &RestoreOptions::default()) {
        Ok(vm) => panic!("restored {} from a tampered snapshot", vm.vm_id()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tampered_snapshots_are_refused_naming_the_file() {
    // An overlay whose header names a host file as its base.
    let (data, id) = snapshot_of_a_debian_vm("backing");
    let dir = smolvm::snapshot::snapshot_dir(&data, &id);
    let out = Command::new("qemu-img")
        .args(["rebase", "-u", "-F", "raw", "-b", "/etc/shadow"])
        .arg(dir.join("overlay.qcow2"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let err = restore(&data, &id);
    assert!(
        err.contains("/etc/shadow") && err.contains("refus"),
        "{err}"
    );
    smolvm::snapshot::remove(&data, &id).unwrap();

    // Its memory file replaced by a symlink to another file.
    let (data, id) = snapshot_of_a_debian_vm("symlink");
    let dir = smolvm::snapshot::snapshot_dir(&data, &id);
    std::fs::remove_file(dir.join("memory.zst")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.join("memory.zst")).unwrap();
    let err = restore(&data, &id);
    assert!(
        err.contains("memory.zst") && err.contains("not a regular file"),
        "{err}"
    );
    smolvm::snapshot::remove(&data, &id).unwrap();

    // Its saved configuration edited.
    let (data, id) = snapshot_of_a_debian_vm("config");
    let meta = smolvm::snapshot::snapshot_dir(&data, &id).join("snapshot.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    json["config"]["mem_size_mib"] = 1.into();
    std::fs::write(&meta, serde_json::to_vec(&json).unwrap()).unwrap();
    let err = restore(&data, &id);
    assert!(err.contains("mem_size_mib"), "{err}");
    smolvm::snapshot::remove(&data, &id).unwrap();
}
