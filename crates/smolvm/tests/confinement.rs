//! QEMU is confined like a jailed VMM (real VMs): seccomp, no socket or file of ours reachable
//! by name, and — when run as root, as CI does — an unprivileged user in namespaces of its own
//! whose root shows none of the host's files.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use smolvm::{DataDir, VmConfig};
use smolvm_vmm::jail::{self, Confinement};
use smolvm_vmm::qemu::QemuBackend;
use smolvm_vmm::{Backend, LaunchOptions};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn qemu_runs_with_seccomp_as_an_unprivileged_user_in_its_own_namespaces() {
    let vm = common::vm_with(VmConfig {
        image: Some("minimal".into()),
        ..VmConfig::default()
    });
    let data = DataDir::from_env();
    let info = smolvm::sandbox::find(&data, vm.vm_id()).expect("listed");
    let qemu = info.qemu_pid.expect("QEMU runs");
    let report = info.confinement.expect("confinement reported");
    assert_eq!(report.seccomp, 2, "{report:?}");
    let status = std::fs::read_to_string(format!("/proc/{qemu}/status")).unwrap();
    assert!(status.contains("\nSeccomp:\t2"), "{status}");
    // Neither the monitor nor the guest channel is a socket anyone could connect to.
    let dir = data.vm_dir(vm.vm_id());
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n == "qmp.sock" || n == "chan.sock"),
        "{names:?}"
    );
    if !is_root() {
        eprintln!("not root: the jail (user, namespaces) is not expected");
        return;
    }
    assert_ne!(report.uid, 0, "{report:?}");
    assert!(report.no_new_privs, "{report:?}");
    for ns in ["mnt", "net", "pid", "ipc", "uts"] {
        assert!(
            report.own_namespaces.iter().any(|n| n == ns),
            "{ns}: {report:?}"
        );
    }
    // Its root holds the program, its libraries, a few devices and its own /proc: no data
    // directory, no home, no other VM.
    let root = std::fs::read_dir(format!("/proc/{qemu}/root"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert!(root.contains(&"usr".to_string()), "{root:?}");
    for absent in ["root", "home", "var", "tmp", "run"] {
        assert!(
            !root.contains(&absent.to_string()),
            "{absent} visible: {root:?}"
        );
    }
    // Its PID namespace holds QEMU alone.
    let pids: Vec<String> = std::fs::read_dir(format!("/proc/{qemu}/root/proc"))
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.parse::<u32>().ok().map(|_| name)
        })
        .collect();
    assert_eq!(pids, vec!["1".to_string()], "{pids:?}");
    // Its network namespace has a loopback and nothing else.
    let links = std::fs::read_to_string(format!("/proc/{qemu}/net/dev")).unwrap();
    let interfaces: Vec<&str> = links
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, vec!["lo"], "{links}");
}

/// Sends one QMP command on `stream` and returns QEMU's answer (or why there was none).
fn qmp(stream: &mut BufReader<UnixStream>, command: &str) -> String {
    writeln!(stream.get_mut(), "{command}").unwrap();
    loop {
        let mut line = String::new();
        match stream.read_line(&mut line) {
            Ok(0) => return "closed".into(),
            Ok(_) if line.contains("\"event\"") => continue,
            Ok(_) => return line,
            Err(e) => return format!("error: {e}"),
        }
    }
}

/// A QEMU asked over its own monitor to migrate through a shell command (`migrate exec:`)
/// cannot run it: its seccomp filter denies spawning, whatever reaches its monitor.
#[test]
fn qemu_cannot_run_host_commands_even_through_its_monitor() {
    let data = DataDir::from_env();
    let config = VmConfig {
        image: Some("minimal".into()),
        vm_id: Some(format!("confine-{}", std::process::id())),
        ..VmConfig::default()
    }
    .validate(&data)
    .unwrap();
    let scratch = smolvm::paths::VmPaths::new(data.vm_dir("confine-scratch"));
    let machine = config.machine_spec(&scratch, true);
    let backend = QemuBackend::new(
        smolvm_vmm::qemu::find_qemu().unwrap(),
        smolvm_vmm::accel::choose_accel(),
        smolvm_vmm::accel::tsc_khz(&data.host_facts()),
    );
    let marker = std::env::temp_dir().join(format!("smolvm-pwned-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    // Seccomp alone (no jail), so that the marker's folder is the host's own /tmp.
    let prepared = backend
        .prepare(
            &machine,
            LaunchOptions {
                incoming: None,
                confinement: Confinement::Seccomp,
            },
        )
        .unwrap();
    let mut spawned = smolvm_vmm::spawn(prepared, &Confinement::Seccomp).unwrap();
    let mut monitor = BufReader::new(spawned.monitor.try_clone().unwrap());
    monitor
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut greeting = String::new();
    monitor.read_line(&mut greeting).unwrap();
    assert!(greeting.contains("QMP"), "{greeting}");
    qmp(&mut monitor, r#"{"execute":"qmp_capabilities"}"#);
    let answer = qmp(
        &mut monitor,
        &format!(
            r#"{{"execute":"migrate","arguments":{{"uri":"exec:touch {}"}}}}"#,
            marker.display()
        ),
    );
    // QEMU either refuses or is killed by its filter; it never runs the command.
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !marker.exists() {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !marker.exists(),
        "QEMU ran a host command (answer: {answer})"
    );
    let _ = spawned.child.kill();
    let _ = spawned.child.wait();
    drop(spawned);
    let _ = jail::inspect(std::process::id());
}
