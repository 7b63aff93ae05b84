//! Errors and the unhappy paths on the fake backend: bad configurations, missing sandboxes,
//! pause/resume, snapshots (unsupported here), a crashed guest or supervisor, and the CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{alive, env, eventually, processes_mentioning};
use smolvm::{Error, SnapshotOptions, VmConfig, VmState};

/// Nothing of any sandbox exists in `env`'s data directory.
fn no_sandboxes(env: &crate::common::TestEnv) -> bool {
    let vms = env.data().vms_dir();
    let empty_dir = std::fs::read_dir(&vms).map_or(true, |mut d| d.next().is_none());
    empty_dir && smolvm::sandbox::list(&env.data()).unwrap().is_empty()
}

#[test]
fn bad_configurations_name_the_field_and_create_nothing() {
    let env = env();
    let base = env.config();
    let mut bad_env = base.clone();
    bad_env.env_vars.insert("bad-key".into(), "x".into());
    let cases: Vec<(VmConfig, &str)> = vec![
        (
            VmConfig {
                vcpu_count: 0,
                ..base.clone()
            },
            "vcpu_count",
        ),
        (
            VmConfig {
                mem_size_mib: 1,
                ..base.clone()
            },
            "mem_size_mib",
        ),
        (
            VmConfig {
                vm_id: Some("Not_Valid".into()),
                ..base.clone()
            },
            "vm_id",
        ),
        (
            VmConfig {
                image: Some("no-such-image".into()),
                ..base.clone()
            },
            "image",
        ),
        (
            VmConfig {
                boot_args: Some("two\nlines".into()),
                ..base.clone()
            },
            "boot_args",
        ),
    ];
    for (config, field) in cases {
        match env.vm(config) {
            Err(Error::InvalidConfig { field: f, reason }) => {
                assert_eq!(f, field, "{reason}");
                if field == "image" {
                    assert!(reason.contains("minimal"), "lists the images: {reason}");
                }
            }
            Err(other) => panic!("{field}: {other:?}"),
            Ok(_) => panic!("{field}: accepted"),
        }
    }
    assert!(matches!(env.vm(bad_env), Err(Error::InvalidEnv(_))));
    let missing_kernel = VmConfig {
        kernel_path: Some(env.root().join("no-kernel")),
        ..base.clone()
    };
    assert!(matches!(
        env.vm(missing_kernel),
        Err(Error::MissingFile {
            what: "kernel_path",
            ..
        })
    ));
    assert!(no_sandboxes(&env));
}

#[test]
fn missing_sandboxes_and_stopped_vms_are_clear_errors() {
    let env = env();
    for attempt in [
        env.attach("ghost").err(),
        smolvm::sandbox::find(&env.data(), "ghost").err(),
    ] {
        assert!(
            matches!(&attempt, Some(Error::NotFound { what: "sandbox", name, .. }) if name == "ghost"),
            "{attempt:?}"
        );
    }
    let vm = env.vm(env.config()).unwrap();
    let err = vm.run("true").unwrap_err();
    assert!(
        matches!(&err, Error::VmNotRunning { state, .. } if state == "created"),
        "{err:?}"
    );
    assert!(err.to_string().contains(vm.vm_id()), "{err}");
    assert!(matches!(
        vm.list_env_vars(),
        Err(Error::VmNotRunning { .. })
    ));
    assert!(matches!(
        vm.read_file("/etc/hostname"),
        Err(Error::VmNotRunning { .. })
    ));
    assert!(matches!(vm.pause(), Err(Error::VmNotRunning { .. })));
}

#[test]
fn a_supervisor_that_cannot_start_its_vm_fails_start_and_leaves_nothing() {
    let env = env();
    let broken = crate::common::TestEnv::with_binaries(
        env!("CARGO_BIN_EXE_smolvm-fake-supervisor"),
        env.root().join("no-such-agent"),
    )
    .unwrap();
    let vm = broken.vm(broken.config()).unwrap();
    let err = vm.start().unwrap_err();
    match &err {
        // The exec failure itself, not a later symptom (a broken guest channel).
        Error::StartFailed { reason, .. } => assert!(
            reason.contains("cannot start the VMM") && reason.contains("No such file"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(vm.status(), VmState::Created);
    assert!(no_sandboxes(&broken));
}

/// The state letter of `pid` in `/proc/PID/stat` (`T` when stopped).
fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.trim_start().chars().next().unwrap()
}

#[test]
fn a_paused_vm_refuses_commands_until_resumed() {
    let env = env();
    let vm = env.persistent("sleeper").unwrap();
    vm.start().unwrap();
    // A second handle, attached while running, learns of the pause from the supervisor.
    let other = env.attach("sleeper").unwrap();
    let (_, agent) = vm.host_pids().unwrap();
    vm.pause().unwrap();
    vm.pause().unwrap();
    assert_eq!(vm.status(), VmState::Paused);
    assert!(eventually(Duration::from_secs(5), || proc_state(agent) == 'T'));
    assert_eq!(
        smolvm::sandbox::find(&env.data(), "sleeper").unwrap().state,
        "paused"
    );
    for handle in [&vm, &other] {
        let err = handle.run("echo nope").unwrap_err();
        assert!(
            matches!(&err, Error::VmNotRunning { state, .. } if state == "paused"),
            "{err:?}"
        );
    }
    vm.resume().unwrap();
    assert_eq!(vm.status(), VmState::Running);
    assert_ne!(proc_state(agent), 'T');
    assert_eq!(vm.run("echo back").unwrap().output(), "back");
    assert_eq!(other.run("echo too").unwrap().output(), "too");
    // A paused VM still stops cleanly.
    vm.pause().unwrap();
    vm.delete().unwrap();
    assert!(eventually(Duration::from_secs(5), || !alive(agent)));
    assert!(no_sandboxes(&env));
}

#[test]
fn snapshots_are_refused_clearly_and_the_vm_carries_on() {
    let env = env();
    let vm = env.running_vm().unwrap();
    vm.set_env_vars(&[("KEPT".to_string(), "yes".to_string())].into(), true)
        .unwrap();
    let options = SnapshotOptions {
        id: Some("snap-fake".into()),
        keep_paused: false,
    };
    let err = vm.snapshot(&options).unwrap_err();
    match &err {
        // The SDK records which QEMU took a snapshot: a host without one stops there.
        Error::MissingProgram { program, .. } => assert_eq!(*program, "qemu-system-x86_64"),
        other => assert!(
            other.to_string().contains("fake backend cannot save"),
            "{other}"
        ),
    }
    let snapshots = env.data().snapshots_dir();
    let left = std::fs::read_dir(&snapshots).map_or(0, |d| d.count());
    assert_eq!(left, 0, "something was left in {}", snapshots.display());
    assert_eq!(vm.status(), VmState::Running);
    assert_eq!(vm.run("echo $KEPT").unwrap().output(), "yes");
}

/// Kills `pid` (a process this test started through the SDK) with SIGKILL.
fn kill9(pid: u32) {
    // SAFETY: kill takes plain integers; `pid` is alive and ours (checked by the caller).
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
}

#[test]
fn a_guest_that_dies_is_reported_and_an_ephemeral_one_leaves_nothing() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let dir = vm.paths().dir().to_path_buf();
    let (supervisor, agent) = vm.host_pids().unwrap();
    assert!(alive(agent));
    kill9(agent);
    assert!(eventually(Duration::from_secs(10), || !alive(supervisor)));
    let err = vm.run("echo hi").unwrap_err();
    assert!(
        matches!(err, Error::Disconnected { .. } | Error::VmNotRunning { .. }),
        "{err:?}"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(smolvm::sandbox::list(&env.data()).unwrap().is_empty());
    drop(vm);
    assert!(processes_mentioning(&dir.display().to_string()).is_empty());
}

#[test]
fn a_persistent_sandbox_whose_guest_died_shows_crashed_and_starts_again() {
    let env = env();
    let vm = env.persistent("fragile").unwrap();
    vm.start().unwrap();
    let (supervisor, agent) = vm.host_pids().unwrap();
    kill9(agent);
    assert!(eventually(Duration::from_secs(10), || !alive(supervisor)));
    let info = smolvm::sandbox::find(&env.data(), "fragile").unwrap();
    assert_eq!(info.state, "crashed");
    assert!(info.reason.unwrap_or_default().contains("on its own"));
    assert!(vm.run("true").is_err());
    drop(vm);
    let again = env.attach("fragile").unwrap();
    assert_eq!(again.status(), VmState::Stopped);
    again.start().unwrap();
    assert_eq!(again.run("echo revived").unwrap().output(), "revived");
    again.delete().unwrap();
    assert!(no_sandboxes(&env));
}

#[test]
fn a_killed_supervisor_takes_its_guest_along_and_rm_cleans_up() {
    let env = env();
    let vm = env.persistent("orphan").unwrap();
    vm.start().unwrap();
    let dir = vm.paths().dir().display().to_string();
    let (supervisor, agent) = vm.host_pids().unwrap();
    drop(vm);
    kill9(supervisor);
    assert!(eventually(Duration::from_secs(10), || !alive(supervisor)
        && !alive(agent)));
    let info = smolvm::sandbox::find(&env.data(), "orphan").unwrap();
    assert_eq!(info.state, "crashed", "{:?}", info.reason);
    let handle = env.attach("orphan").unwrap();
    assert!(matches!(
        handle.run("true"),
        Err(Error::VmNotRunning { .. })
    ));
    handle.delete().unwrap();
    assert!(no_sandboxes(&env));
    assert!(processes_mentioning(&dir).is_empty());
}

/// `target/<profile>/smolvm`, if the workspace's CLI was built beside this crate's binaries.
fn cli() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_BIN_EXE_smolvm-fake-supervisor")).parent()?;
    Some(dir.join("smolvm")).filter(|p| p.is_file())
}

#[test]
fn the_cli_runs_a_command_on_the_fake_backend() {
    let Some(cli) = cli() else {
        eprintln!("skipped: no smolvm CLI beside the test binaries (cargo build --workspace)");
        return;
    };
    let env = env();
    let run = |args: &[&str]| {
        std::process::Command::new(&cli)
            .args(args)
            .env("SMOLVM_DATA_DIR", env.data().root())
            .env(
                "SMOLVM_SUPERVISOR",
                env!("CARGO_BIN_EXE_smolvm-fake-supervisor"),
            )
            .env(
                smolvm_testkit::AGENT_ENV,
                env!("CARGO_BIN_EXE_smolvm-fake-agent"),
            )
            // The CLI checks for QEMU before it starts a supervisor; the fake one needs none.
            .env("SMOLVM_QEMU", "/bin/true")
            .output()
            .unwrap()
    };
    let out = run(&["run", "--image", "minimal", "--cold", "--", "echo", "hi"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    let out = run(&[
        "run",
        "--image",
        "minimal",
        "--cold",
        "--",
        "echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end(), "err");
    assert!(no_sandboxes(&env));
}
