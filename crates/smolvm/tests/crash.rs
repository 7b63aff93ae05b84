//! A VM killed in the middle of a stream of environment writes comes back with the old file or
//! the new one, never a torn one (persistent sandbox on the Debian disk image).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smolvm::{DataDir, SmolVm, VmConfig};

#[test]
fn env_file_survives_a_qemu_sigkill_mid_write_old_or_new() {
    let data = DataDir::from_env();
    let name = format!("crash-{}", std::process::id());
    let config = VmConfig {
        vm_id: Some(name.clone()),
        image: Some("debian".into()),
        ..VmConfig::default()
    };
    let vm = SmolVm::new_persistent(config, data.clone()).unwrap();
    vm.start().unwrap();
    let pad = "x".repeat(64 << 10);
    vm.set_env_vars(
        &[
            ("COUNTER".to_string(), "0".to_string()),
            ("PAD".to_string(), pad.clone()),
        ]
        .into(),
        true,
    )
    .unwrap();
    let (_, qemu) = vm.host_pids().unwrap();

    let vm = Arc::new(vm);
    let acknowledged = Arc::new(AtomicU64::new(0));
    let writer = {
        let (vm, acknowledged, pad) = (Arc::clone(&vm), Arc::clone(&acknowledged), pad.clone());
        std::thread::spawn(move || {
            for i in 1u64.. {
                let vars: BTreeMap<String, String> = [
                    ("COUNTER".to_string(), i.to_string()),
                    ("PAD".to_string(), format!("{pad}{i}")),
                ]
                .into();
                if vm.set_env_vars(&vars, true).is_err() {
                    return;
                }
                acknowledged.store(i, Ordering::SeqCst);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill with plain integers; the pid is this test's VM's QEMU.
    unsafe { libc::kill(qemu as i32, libc::SIGKILL) };
    writer.join().unwrap();
    let last_acknowledged = acknowledged.load(Ordering::SeqCst);
    assert!(last_acknowledged > 0, "no write completed before the kill");
    drop(vm);
    // The supervisor notices QEMU's death and records it; wait until it has.
    assert!(common::eventually(Duration::from_secs(20), || {
        smolvm::sandbox::find(&data, &name).is_ok_and(|s| s.state == "crashed")
    }));

    let vm = SmolVm::attach_in(data, &name).unwrap();
    vm.start().unwrap();
    let vars = vm
        .list_env_vars()
        .expect("the env file parses after the crash");
    let counter: u64 = vars["COUNTER"].parse().unwrap();
    // Old or new: an acknowledged write is durable, and at most one more may have landed.
    assert!(
        counter == last_acknowledged || counter == last_acknowledged + 1,
        "{counter} vs {last_acknowledged}"
    );
    assert_eq!(vars["PAD"], format!("{pad}{counter}"));
    let file = vm
        .run("cat /etc/profile.d/smolvm_env.sh")
        .unwrap()
        .stdout_str();
    assert!(
        file.starts_with("#!/bin/sh\n# SmolVM managed environment variables\n\n"),
        "{file}"
    );
    vm.delete().unwrap();
}
