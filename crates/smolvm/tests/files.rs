//! Files in and out, streaming commands, stdin, signals and terminals, on real VMs.

mod common;

use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use smolvm::process::{Event, SpawnOptions};
use smolvm::protocol::TtySize;
use smolvm::{Error, VmConfig};

fn sha256_file(path: &Path) -> String {
    let mut hasher = Sha256::new();
    let mut file = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_file(path: &Path, size: usize) {
    let mut file = std::fs::File::create(path).unwrap();
    let mut urandom = std::fs::File::open("/dev/urandom").unwrap();
    std::io::copy(&mut (&mut urandom).take(size as u64), &mut file).unwrap();
}

fn scratch(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("smolvm-files-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn files_of_4k_10m_and_300m_round_trip_with_equal_sha256() {
    let vm = common::vm_with(VmConfig {
        mem_size_mib: 1024,
        ..VmConfig::default()
    });
    let dir = scratch("roundtrip");
    for (name, size) in [
        ("small.bin", 4 << 10),
        ("medium.bin", 10 << 20),
        ("large.bin", 300 << 20),
    ] {
        let local = dir.join(name);
        random_file(&local, size);
        let guest = vm.upload_file(&local, "/tmp/in/").unwrap();
        assert_eq!(guest, format!("/tmp/in/{name}"));
        let guest_sum = vm.run(&format!("sha256sum {guest}")).unwrap().output();
        assert_eq!(
            guest_sum.split_whitespace().next().unwrap(),
            sha256_file(&local),
            "{name} in the guest"
        );
        let back = vm.download_file(&guest, &dir.join("back")).unwrap();
        assert_eq!(
            sha256_file(&back),
            sha256_file(&local),
            "{name} back on the host"
        );
        std::fs::remove_file(&back).unwrap();
        vm.run(&format!("rm {guest}")).unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bytes_modes_targets_and_bad_paths() {
    let vm = common::vm();
    vm.write_file("/opt/app/run.sh", b"#!/bin/sh\necho ran\n", 0o750)
        .unwrap();
    assert_eq!(vm.run("/opt/app/run.sh").unwrap().output(), "ran");
    assert_eq!(
        vm.run("stat -c %a /opt/app/run.sh").unwrap().output(),
        "750"
    );
    assert_eq!(
        vm.read_file("/opt/app/run.sh").unwrap(),
        b"#!/bin/sh\necho ran\n"
    );

    let dir = scratch("modes");
    let local = dir.join("tool");
    std::fs::write(&local, b"x").unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&local).unwrap().permissions(),
        0o700,
    );
    std::fs::set_permissions(&local, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    vm.run("mkdir -p /srv/existing").unwrap();
    assert_eq!(
        vm.upload_file(&local, "/srv/existing").unwrap(),
        "/srv/existing/tool"
    );
    assert_eq!(
        vm.run("stat -c %a /srv/existing/tool").unwrap().output(),
        "700"
    );
    let back = vm.download_file("/srv/existing/tool", &dir).unwrap();
    assert_eq!(back, dir.join("tool"));
    assert_eq!(
        std::fs::metadata(&back).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let err = vm
        .upload_file(&local, "relative/path")
        .unwrap_err()
        .to_string();
    assert!(err.contains("not an absolute guest path"), "{err}");
    let err = vm
        .upload_file_with(&local, "/no/such/parent/file", false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("parent directory does not exist"), "{err}");
    let err = vm
        .download_file("/does/not/exist", &dir.join("nothing"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("No such file"), "{err}");
    assert!(
        !dir.join("nothing").exists(),
        "no partial file at the destination"
    );
    let err = vm.upload_file(&dir.join("missing"), "/tmp/x").unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    // Guest disk full: /mnt/tiny is a 1 MiB tmpfs; a 4 MiB upload fails and leaves nothing.
    vm.run("mkdir -p /mnt/tiny && mount -t tmpfs -o size=1m tmpfs /mnt/tiny")
        .unwrap();
    random_file(&dir.join("big"), 4 << 20);
    let err = vm
        .upload_file(&dir.join("big"), "/mnt/tiny/big")
        .unwrap_err()
        .to_string();
    assert!(err.contains("No space left"), "{err}");
    assert_eq!(vm.run("ls -A /mnt/tiny | wc -l").unwrap().output(), "0");
    std::fs::remove_dir_all(&dir).unwrap();
}

use std::os::unix::fs::PermissionsExt;

#[test]
fn trees_keep_nesting_empty_dirs_symlinks_and_modes() {
    let vm = common::vm();
    let dir = scratch("tree");
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("a/b/c")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(src.join("a/b/c/deep.txt"), b"deep").unwrap();
    std::fs::write(src.join("top.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.join("top.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(src.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink("a/b/c/deep.txt", src.join("link")).unwrap();

    vm.upload_dir(&src, "/srv/tree").unwrap();
    assert_eq!(vm.run("cat /srv/tree/link").unwrap().output(), "deep");
    assert_eq!(
        vm.run("stat -c %a /srv/tree/top.sh /srv/tree/empty")
            .unwrap()
            .output(),
        "755\n700"
    );

    let out = dir.join("out");
    vm.download_dir("/srv/tree", &out).unwrap();
    assert_eq!(std::fs::read(out.join("a/b/c/deep.txt")).unwrap(), b"deep");
    assert!(out.join("empty").is_dir());
    assert_eq!(
        std::fs::read_link(out.join("link")).unwrap(),
        Path::new("a/b/c/deep.txt")
    );
    assert_eq!(
        std::fs::metadata(out.join("top.sh"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::metadata(out.join("empty"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );

    // A symlink escaping the tree is refused before anything is written.
    vm.run("mkdir -p /srv/evil && ln -s /etc /srv/evil/etc && echo x > /srv/evil/file")
        .unwrap();
    let target = dir.join("evil");
    let err = vm
        .download_dir("/srv/evil", &target)
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing"), "{err}");
    assert!(!target.exists());
    vm.run("rm /srv/evil/etc && ln -s ../../outside /srv/evil/up")
        .unwrap();
    assert!(vm.download_dir("/srv/evil", &target).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn streamed_output_arrives_before_the_command_exits() {
    let vm = common::vm();
    let mut process = vm
        .spawn("echo a; sleep 2; echo b", &SpawnOptions::default())
        .unwrap();
    let mut first_a = None;
    let mut exit_at = None;
    let mut stdout = Vec::new();
    while exit_at.is_none() {
        match process.next_event(Some(Duration::from_secs(30))).unwrap() {
            Some(Event::Stdout(bytes)) => {
                if first_a.is_none() && bytes.contains(&b'a') {
                    first_a = Some(Instant::now());
                }
                stdout.extend(bytes);
            }
            Some(Event::Exit(code)) => {
                assert_eq!(code, 0);
                exit_at = Some(Instant::now());
            }
            Some(Event::Stderr(_)) => {}
            None => panic!("no event within 30 s"),
        }
    }
    assert_eq!(stdout, b"a\nb\n");
    let lead = exit_at.unwrap() - first_a.unwrap();
    assert!(
        lead >= Duration::from_secs(1),
        "`a` arrived only {lead:?} before the exit"
    );
}

#[test]
fn stdin_pipes_through_cat_and_signals_stop_commands() {
    let vm = common::vm();
    let process = vm
        .spawn(
            "cat; echo done >&2",
            &SpawnOptions {
                stdin: true,
                ..SpawnOptions::default()
            },
        )
        .unwrap();
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    process.write_stdin(&payload).unwrap();
    process.close_stdin().unwrap();
    let result = process.wait().unwrap();
    assert_eq!(result.stdout, payload);
    assert_eq!(result.stderr, b"done\n");

    let mut process = vm
        .spawn(
            "trap 'echo got-int; exit 5' INT; while true; do sleep 0.1; done",
            &SpawnOptions::default(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    process.signal(libc::SIGINT).unwrap();
    let mut out = Vec::new();
    loop {
        match process.next_event(Some(Duration::from_secs(20))).unwrap() {
            Some(Event::Stdout(b)) => out.extend(b),
            Some(Event::Exit(code)) => {
                assert_eq!(code, 5);
                break;
            }
            Some(Event::Stderr(_)) => {}
            None => panic!("SIGINT did not stop the command"),
        }
    }
    assert_eq!(out, b"got-int\n");
    let killed = vm.spawn("sleep 1000", &SpawnOptions::default()).unwrap();
    killed.signal(libc::SIGKILL).unwrap();
    assert_eq!(killed.wait().unwrap().exit_code, 137);
}

/// Reads a terminal's output until `needle` shows up; returns the exit code if it ended.
fn read_until(
    shell: &mut smolvm::process::Process,
    screen: &mut Vec<u8>,
    needle: &str,
) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !String::from_utf8_lossy(screen).contains(needle) {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} on screen: {}",
            String::from_utf8_lossy(screen)
        );
        match shell.next_event(Some(Duration::from_secs(30))).unwrap() {
            Some(Event::Stdout(b)) => screen.extend(b),
            Some(Event::Exit(code)) => return Some(code),
            _ => {}
        }
    }
    None
}

#[test]
fn a_terminal_runs_an_interactive_shell() {
    let vm = common::vm();
    let options = SpawnOptions {
        tty: Some(TtySize { rows: 24, cols: 80 }),
        ..SpawnOptions::default()
    };
    let mut shell = vm.spawn("exec /bin/sh -l", &options).unwrap();
    let mut screen = Vec::new();
    shell
        .write_stdin(b"[ -t 0 ] && echo is-a-tty; stty size; echo $((6*7))\n")
        .unwrap();
    read_until(&mut shell, &mut screen, "\r\n42\r\n");
    let text = String::from_utf8_lossy(&screen).into_owned();
    assert!(
        text.contains("is-a-tty") && text.contains("24 80"),
        "{text}"
    );
    shell.resize(40, 100).unwrap();
    shell.write_stdin(b"stty size\n").unwrap();
    read_until(&mut shell, &mut screen, "40 100");
    shell.write_stdin(b"exit 3\n").unwrap();
    let code = loop {
        if let Some(code) = read_until(&mut shell, &mut screen, "never-printed") {
            break code;
        }
    };
    assert_eq!(code, 3, "{}", String::from_utf8_lossy(&screen));
}
