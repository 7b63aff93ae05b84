//! Lifecycle through the SDK on the fake backend: start, stop, delete, drop, persistent
//! sandboxes and a second handle.

mod common;

use std::time::Duration;

use common::{alive, env, eventually, processes_mentioning};
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
