//! Lifecycle through the SDK on the fake backend: start, stop, delete, drop, persistent
//! sandboxes and a second handle.

use std::time::Duration;

use crate::common::{alive, env, eventually, processes_mentioning};
use smolvm::{Error, VmState};

#[test]
fn create_run_stop_delete() {
    let env = env();
    let vm = env.vm(env.config()).unwrap();
    assert_eq!(vm.status(), VmState::Created);
    assert!(!vm.paths().dir().exists(), "nothing exists before start");
    vm.start().unwrap();
    assert_eq!(vm.status(), VmState::Running);
    assert_eq!(vm.run("echo hello").unwrap().output(), "hello");
    let dir = vm.paths().dir().to_path_buf();
    let (supervisor, agent) = vm.host_pids().unwrap();
    assert!(alive(supervisor) && alive(agent));
    vm.stop().unwrap();
    assert_eq!(vm.status(), VmState::Stopped);
    assert!(!alive(supervisor), "the supervisor exited at stop");
    assert!(eventually(Duration::from_secs(5), || !alive(agent)));
    let err = vm.run("true").unwrap_err();
    assert!(
        matches!(&err, Error::VmNotRunning { state, .. } if state == "stopped"),
        "{err:?}"
    );
    vm.delete().unwrap();
    assert_eq!(vm.status(), VmState::Deleted);
    assert!(!dir.exists());
    assert!(smolvm::sandbox::list(&env.data()).unwrap().is_empty());
}

#[test]
fn dropping_an_ephemeral_vm_leaves_nothing() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let dir = vm.paths().dir().to_path_buf();
    let (supervisor, agent) = vm.host_pids().unwrap();
    assert_eq!(smolvm::sandbox::list(&env.data()).unwrap().len(), 1);
    assert!(!processes_mentioning(&dir.display().to_string()).is_empty());
    drop(vm);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(smolvm::sandbox::list(&env.data()).unwrap().is_empty());
    assert!(!alive(supervisor));
    assert!(eventually(Duration::from_secs(5), || !alive(agent)));
    assert_eq!(
        processes_mentioning(&dir.display().to_string()),
        Vec::<u32>::new()
    );
}

#[test]
fn starting_twice_does_nothing() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let pids = vm.host_pids().unwrap();
    vm.start().unwrap();
    assert_eq!(
        vm.host_pids().unwrap(),
        pids,
        "a second start started another VM"
    );
    assert_eq!(vm.status(), VmState::Running);
}

#[test]
fn a_deleted_vm_cannot_start_again() {
    let env = env();
    let vm = env.running_vm().unwrap();
    vm.delete().unwrap();
    let err = vm.start().unwrap_err();
    assert!(
        matches!(&err, Error::VmNotRunning { state, .. } if state == "deleted"),
        "{err:?}"
    );
}

#[test]
fn a_persistent_sandbox_is_reached_from_a_second_handle() {
    let env = env();
    let vm = env.persistent("keeper").unwrap();
    vm.start().unwrap();
    vm.write_file(
        &format!("{}/note", env.scratch("keeper").display()),
        b"kept",
        0o600,
    )
    .unwrap();
    let pids = vm.host_pids().unwrap();
    drop(vm);
    // The sandbox outlives its handle.
    assert!(alive(pids.0) && alive(pids.1));
    let other = env.attach("keeper").unwrap();
    assert_eq!(other.status(), VmState::Running);
    assert_eq!(other.host_pids().unwrap(), pids);
    assert_eq!(
        other
            .run("hostname; echo $((6*7))")
            .unwrap()
            .stdout_str()
            .lines()
            .last(),
        Some("42")
    );
    other.stop().unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(pids.0) && !alive(pids.1)));
    let info = smolvm::sandbox::find(&env.data(), "keeper").unwrap();
    assert_eq!(info.state, "stopped");
    // A stopped sandbox starts again through any handle.
    let third = env.attach("keeper").unwrap();
    assert_eq!(third.status(), VmState::Stopped);
    third.start().unwrap();
    assert_eq!(third.run("echo again").unwrap().output(), "again");
    assert_ne!(third.host_pids().unwrap(), pids);
    third.delete().unwrap();
    assert!(matches!(
        smolvm::sandbox::find(&env.data(), "keeper"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_sandbox_name_is_taken_until_deleted() {
    let env = env();
    let first = env.persistent("twin").unwrap();
    first.start().unwrap();
    let second = env.persistent("twin").unwrap();
    let err = second.start().unwrap_err();
    assert!(
        matches!(&err, Error::AlreadyExists { name, .. } if name == "twin"),
        "{err:?}"
    );
    assert_eq!(first.run("echo still").unwrap().output(), "still");
    first.delete().unwrap();
    second.start().unwrap();
    second.delete().unwrap();
}
