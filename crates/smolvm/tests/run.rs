//! Running commands in real VMs: exit codes, output, shells, timeouts, concurrency.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use smolvm::{Error, RunOptions};

#[test]
fn exit_codes_propagate() {
    let vm = common::vm();
    for code in [0, 1, 3] {
        let result = vm.run(&format!("exit {code}")).unwrap();
        assert_eq!(result.exit_code, code);
        assert_eq!(result.ok(), code == 0);
    }
    let missing = vm.run("no-such-command-here").unwrap();
    assert_eq!(missing.exit_code, 127);
    assert!(
        missing.stderr_str().contains("not found"),
        "{:?}",
        missing.stderr_str()
    );
    // A command killed by a signal reports 128 + N, as shells do.
    assert_eq!(vm.run("kill -9 $$").unwrap().exit_code, 137);
}

#[test]
fn stdout_and_stderr_stay_separate() {
    let vm = common::vm();
    let result = vm
        .run("echo out1; echo err1 >&2; echo out2; echo err2 >&2")
        .unwrap();
    assert_eq!(result.stdout_str(), "out1\nout2\n");
    assert_eq!(result.stderr_str(), "err1\nerr2\n");
    assert_eq!(result.output(), "out1\nout2");
}

#[test]
fn one_mebibyte_of_output_arrives_intact() {
    let vm = common::vm();
    let result = vm
        .run("head -c 1048576 /dev/urandom > /tmp/blob; sha256sum /tmp/blob >&2; cat /tmp/blob")
        .unwrap();
    assert_eq!(result.stdout.len(), 1 << 20);
    let host_sum: String = Sha256::digest(&result.stdout)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let guest_sum = result
        .stderr_str()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert_eq!(host_sum, guest_sum);
}

#[test]
fn utf8_and_invalid_bytes_are_kept_exactly() {
    let vm = common::vm();
    let result = vm
        .run(r"printf 'h\303\251llo \342\234\223 \377\376 end'")
        .unwrap();
    assert_eq!(result.stdout, b"h\xc3\xa9llo \xe2\x9c\x93 \xff\xfe end");
    assert_eq!(result.stdout_str(), "héllo ✓ \u{fffd}\u{fffd} end");
    let echo = vm.run("echo 'grüße 🦀'").unwrap();
    assert_eq!(echo.output(), "grüße 🦀");
}

#[test]
fn login_shell_reads_profile_d_and_raw_does_not() {
    let vm = common::vm();
    vm.run("echo 'export PROFILE_PROBE=seen' > /etc/profile.d/t.sh")
        .unwrap();
    assert_eq!(
        vm.run("echo \"[$PROFILE_PROBE]\"").unwrap().output(),
        "[seen]"
    );
    let raw = vm
        .run_with("echo \"[$PROFILE_PROBE]\"", &RunOptions::raw())
        .unwrap();
    assert_eq!(raw.output(), "[]");
}

#[test]
fn timeout_kills_the_whole_process_group_and_the_vm_keeps_working() {
    let vm = common::vm();
    let started = Instant::now();
    let options = RunOptions::default().with_timeout(Some(Duration::from_secs(2)));
    let err = vm
        .run_with("sleep 1000 & sleep 1000", &options)
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    match &err {
        Error::Timeout {
            command, timeout, ..
        } => {
            assert_eq!(command, "sleep 1000 & sleep 1000");
            assert_eq!(*timeout, Duration::from_secs(2));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("sleep 1000") && message.contains("2s"),
        "{message}"
    );
    // Both sleeps (the shell's child and its background child) are gone. Read from /proc:
    // the Debian image has no `ps`.
    let left = vm
        .run("grep -ls '[s]leep' /proc/[0-9]*/cmdline | wc -l")
        .unwrap();
    assert_eq!(left.output(), "0", "processes left: {}", left.stdout_str());
    assert_eq!(vm.run("echo still here").unwrap().output(), "still here");
}

#[test]
fn twenty_concurrent_runs_on_one_vm_all_succeed() {
    let vm = Arc::new(common::vm());
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let vm = Arc::clone(&vm);
            std::thread::spawn(move || {
                let result = vm
                    .run(&format!(
                        "sleep 0.2; echo run-{i}; echo e-{i} >&2; exit {}",
                        i % 4
                    ))
                    .unwrap();
                assert_eq!(result.output(), format!("run-{i}"));
                assert_eq!(result.stderr_str(), format!("e-{i}\n"));
                assert_eq!(result.exit_code, i % 4);
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("run thread");
    }
}

#[test]
fn background_processes_do_not_hold_a_command_open() {
    let vm = common::vm();
    let started = Instant::now();
    let result = vm.run("sleep 30 > /dev/null 2>&1 & echo started").unwrap();
    assert_eq!(result.output(), "started");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Even when the background process keeps stdout open, the command returns.
    let started = Instant::now();
    vm.run("sleep 30 & echo again").unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
}
