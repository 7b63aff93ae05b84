//! VM lifecycle: isolation, cleanup after drop/delete and on crash paths, bad input.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use smolvm::{DataDir, Error, RunOptions, SmolVm, VmConfig, VmState};

#[test]
fn two_vms_do_not_see_each_others_files() {
    let a = common::vm();
    let b = common::vm();
    a.run("echo secret-a > /root/mine").unwrap();
    assert_eq!(a.run("cat /root/mine").unwrap().output(), "secret-a");
    let in_b = b.run("cat /root/mine").unwrap();
    assert_ne!(in_b.exit_code, 0);
    assert_ne!(
        a.run("hostname").unwrap().output(),
        b.run("hostname").unwrap().output()
    );
}

#[test]
fn drop_and_delete_leave_nothing_behind() {
    let vm = common::vm();
    let dir = vm.paths().dir().to_path_buf();
    let (supervisor, qemu) = vm.host_pids().unwrap();
    assert!(common::process_alive(supervisor) && common::process_alive(qemu));
    drop(vm);
    assert!(common::dir_gone(&dir), "{} still exists", dir.display());
    assert!(
        common::eventually(Duration::from_secs(5), || !common::process_alive(qemu)),
        "QEMU {qemu} still runs"
    );
    assert!(
        !common::process_alive(supervisor),
        "supervisor {supervisor} still runs"
    );

    let vm = common::vm();
    let dir = vm.paths().dir().to_path_buf();
    let (_, qemu) = vm.host_pids().unwrap();
    vm.stop().unwrap();
    assert_eq!(vm.status(), VmState::Stopped);
    assert!(!common::process_alive(qemu));
    vm.delete().unwrap();
    assert_eq!(vm.status(), VmState::Deleted);
    assert!(common::dir_gone(&dir));
}

#[test]
fn stopped_and_deleted_vms_refuse_commands_naming_vm_and_state() {
    let vm = common::vm();
    vm.stop().unwrap();
    let err = vm.run("true").unwrap_err();
    assert!(matches!(err, Error::VmNotRunning { .. }));
    let message = err.to_string();
    assert!(
        message.contains("VM is stopped") && message.contains(vm.vm_id()),
        "{message}"
    );
    vm.delete().unwrap();
    let message = vm.run("true").unwrap_err().to_string();
    assert!(message.contains("VM is deleted"), "{message}");
}

#[test]
fn a_killed_supervisor_takes_qemu_with_it_and_drop_still_cleans_up() {
    let vm = common::vm();
    let dir = vm.paths().dir().to_path_buf();
    let (supervisor, qemu) = vm.host_pids().unwrap();
    // SAFETY: kill with plain integers; the supervisor is our child.
    unsafe { libc::kill(supervisor as i32, libc::SIGKILL) };
    assert!(
        common::eventually(Duration::from_secs(10), || !common::process_alive(qemu)),
        "QEMU {qemu} outlived its supervisor"
    );
    let err = vm.run("true").unwrap_err();
    assert!(matches!(err, Error::Disconnected { .. }), "{err:?}");
    drop(vm);
    assert!(common::dir_gone(&dir));
}

#[test]
fn bad_input_is_refused_with_a_clear_error_and_changes_nothing() {
    let vm = common::vm();
    let err = vm.run("").unwrap_err().to_string();
    assert!(err.contains("command is empty"), "{err}");
    let err = vm
        .run_with(
            "true",
            &RunOptions::default().with_timeout(Some(Duration::ZERO)),
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("timeout"), "{err}");

    let data = DataDir::from_env();
    let err = SmolVm::with_data_dir(
        VmConfig {
            mem_size_mib: 32,
            ..VmConfig::default()
        },
        data.clone(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("mem_size_mib"), "{err}");
    let err = SmolVm::with_data_dir(
        VmConfig {
            mem_size_mib: 64 << 20,
            ..VmConfig::default()
        },
        data.clone(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("host's"), "{err}");

    let empty = std::env::temp_dir().join(format!("smolvm-empty-{}", std::process::id()));
    let err = SmolVm::with_data_dir(VmConfig::default(), DataDir::at(&empty))
        .err()
        .unwrap();
    assert!(matches!(err, Error::MissingFile { .. }));
    assert!(err.to_string().contains("smolvm setup"), "{err}");
    assert!(!empty.exists(), "validation must not create anything");

    let mut env = BTreeMap::new();
    env.insert("BAD-KEY".to_string(), "x".to_string());
    let err = SmolVm::with_data_dir(
        VmConfig {
            env_vars: env,
            ..VmConfig::default()
        },
        data,
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("Invalid environment variable key"),
        "{err}"
    );
    // The VM that was running is untouched by all of this.
    assert_eq!(vm.run("echo ok").unwrap().output(), "ok");
}
