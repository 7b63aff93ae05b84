//! Commands through the SDK, the supervisor's router and the agent (fake backend): output and
//! exit codes, concurrency, stdin, streaming, timeouts, cancellation and flow control.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{alive, env, eventually};
use smolvm::process::{Event, SpawnOptions};
use smolvm::{CancelToken, Error, Output, RunOptions};

#[test]
fn stdout_stderr_and_exit_codes_are_kept_apart() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let r = vm.run("echo out; echo err >&2; exit 7").unwrap();
    assert_eq!(
        (
            r.exit_code,
            r.stdout_str().as_str(),
            r.stderr_str().as_str()
        ),
        (7, "out\n", "err\n")
    );
    assert!(!r.ok());
    assert!(vm.run("true").unwrap().ok());
    // Killed by a signal: 128 + N, as shells report it.
    assert_eq!(vm.run("kill -9 $$").unwrap().exit_code, 137);
    // Raw and login shells, per-command variables and working directory.
    let dir = env.scratch("cwd");
    let options = RunOptions {
        env: [("ONLY_HERE".to_string(), "yes".to_string())].into(),
        cwd: Some(dir.display().to_string()),
        ..RunOptions::raw()
    };
    let r = vm.run_with("echo $ONLY_HERE; pwd", &options).unwrap();
    assert_eq!(r.stdout_str(), format!("yes\n{}\n", dir.display()));
    assert_eq!(
        vm.run("echo ${ONLY_HERE:-unset}").unwrap().output(),
        "unset"
    );
}

#[test]
fn invalid_commands_are_refused_before_reaching_the_guest() {
    let env = env();
    let vm = env.running_vm().unwrap();
    for (command, options) in [
        ("  ", RunOptions::default()),
        ("a\0b", RunOptions::default()),
        (
            "true",
            RunOptions::default().with_timeout(Some(Duration::ZERO)),
        ),
    ] {
        let err = vm.run_with(command, &options).unwrap_err();
        assert!(
            matches!(err, Error::InvalidConfig { .. }),
            "{command:?}: {err:?}"
        );
    }
    let bad_env = RunOptions {
        env: [("1BAD".to_string(), "x".to_string())].into(),
        ..RunOptions::default()
    };
    assert!(matches!(
        vm.run_with("true", &bad_env),
        Err(Error::InvalidEnv(_))
    ));
}

#[test]
fn concurrent_commands_get_their_own_output() {
    let env = env();
    let vm = Arc::new(env.running_vm().unwrap());
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let vm = Arc::clone(&vm);
            std::thread::spawn(move || {
                for i in 0..5 {
                    // Interleaved, partial writes on both streams, of different lengths.
                    let command = format!(
                        "for n in $(seq 1 {n}); do printf 'o{t}-{i}.'; printf 'e{t}-{i}.' >&2; done; exit {i}",
                        n = 20 + t * 7 + i
                    );
                    let r = vm.run_with(&command, &RunOptions::raw()).unwrap();
                    let n = 20 + t * 7 + i;
                    assert_eq!(r.exit_code, i as i32);
                    assert_eq!(r.stdout_str(), format!("o{t}-{i}.").repeat(n));
                    assert_eq!(r.stderr_str(), format!("e{t}-{i}.").repeat(n));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn stdin_reaches_the_command_and_closes() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let options = SpawnOptions {
        stdin: true,
        shell: smolvm::Shell::Raw,
        ..SpawnOptions::default()
    };
    let process = vm.spawn("tr a-z A-Z", &options).unwrap();
    process.write_stdin(b"hello ").unwrap();
    process.input().write_stdin(b"world").unwrap();
    process.close_stdin().unwrap();
    let r = process.wait().unwrap();
    assert_eq!((r.exit_code, r.stdout_str().as_str()), (0, "HELLO WORLD"));
    // More than one frame and more than a pipe holds.
    let big = vec![b'x'; 3 << 20];
    let process = vm.spawn("wc -c", &options).unwrap();
    process.write_stdin(&big).unwrap();
    process.close_stdin().unwrap();
    assert_eq!(process.wait().unwrap().output(), (3 << 20).to_string());
    // Without stdin, the command reads end-of-file at once.
    let r = vm.run_with("cat; echo eof", &RunOptions::raw()).unwrap();
    assert_eq!(r.output(), "eof");
}

#[test]
fn output_streams_while_the_command_runs() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let options = SpawnOptions {
        shell: smolvm::Shell::Raw,
        ..SpawnOptions::default()
    };
    let mut process = vm
        .spawn("echo first; sleep 2; echo second", &options)
        .unwrap();
    let started = Instant::now();
    let first = process.next_event(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(first, Some(Event::Stdout(b"first\n".to_vec())));
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    // Nothing more until the sleep ends.
    assert_eq!(
        process
            .next_event(Some(Duration::from_millis(300)))
            .unwrap(),
        None
    );
    assert_eq!(process.wait().unwrap().stdout_str(), "second\n");
    // run_streaming hands each stream over whole and in order.
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (code, _) = vm
        .run_streaming(
            "echo a; echo b >&2; echo c",
            &RunOptions::raw(),
            &mut |o| match o {
                Output::Stdout(b) => out.extend_from_slice(b),
                Output::Stderr(b) => err.extend_from_slice(b),
            },
        )
        .unwrap();
    assert_eq!((code, &out[..], &err[..]), (0, &b"a\nc\n"[..], &b"b\n"[..]));
}

/// Runs `command` (which records its shell's pid in `pidfile`), expecting `check` of the
/// error; then the recorded process must be gone and the VM still usable.
fn killed_on(vm: &smolvm::SmolVm, pidfile: &std::path::Path, options: &RunOptions) -> Error {
    let command = format!("echo $$ > {}; exec sleep 30", pidfile.display());
    let started = Instant::now();
    let err = vm.run_with(&command, options).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let pid: u32 = std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !alive(pid)),
        "pid {pid} survived"
    );
    assert_eq!(vm.run("echo alive").unwrap().output(), "alive");
    err
}

#[test]
fn a_timeout_kills_the_command_and_says_so() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let pidfile = env.scratch("timeout").join("pid");
    let options = RunOptions::raw().with_timeout(Some(Duration::from_millis(500)));
    let err = killed_on(&vm, &pidfile, &options);
    match err {
        Error::Timeout {
            timeout, command, ..
        } => {
            assert_eq!(timeout, Duration::from_millis(500));
            assert!(command.contains("sleep 30"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_cancel_token_kills_the_command() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let pidfile = env.scratch("cancel").join("pid");
    let token = CancelToken::new();
    let options = RunOptions {
        cancel: Some(token.clone()),
        ..RunOptions::raw()
    };
    let canceller = std::thread::spawn({
        let pidfile = pidfile.clone();
        move || {
            // Once the command is surely running.
            assert!(eventually(Duration::from_secs(10), || pidfile.exists()));
            token.cancel();
        }
    });
    let err = killed_on(&vm, &pidfile, &options);
    canceller.join().unwrap();
    assert!(matches!(err, Error::Cancelled { .. }), "{err:?}");
}

#[test]
fn sixty_four_mib_arrive_whole_through_the_router() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let size = 64usize << 20;
    let mut bytes = 0usize;
    let mut chunks = 0usize;
    let (code, _) = vm
        .run_streaming(
            &format!("head -c {size} /dev/zero"),
            &RunOptions::raw(),
            &mut |o| {
                if let Output::Stdout(b) = o {
                    assert!(b.iter().all(|&x| x == 0));
                    bytes += b.len();
                    chunks += 1;
                }
            },
        )
        .unwrap();
    assert_eq!((code, bytes), (0, size));
    assert!(chunks > 1);
    // Buffered, exactly the default cap: whole, and not marked truncated.
    let r = vm
        .run_with(&format!("head -c {size} /dev/zero"), &RunOptions::raw())
        .unwrap();
    assert_eq!((r.stdout.len(), r.stdout_truncated), (size, false));
}

#[test]
fn max_output_truncates_and_the_command_still_finishes() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let options = RunOptions::raw().with_max_output(Some(4096));
    let r = vm
        .run_with(
            "head -c 1000000 /dev/urandom; echo done >&2; exit 3",
            &options,
        )
        .unwrap();
    assert_eq!(r.exit_code, 3, "the exit code arrives after the cap");
    assert_eq!((r.stdout.len(), r.stdout_truncated), (4096, true));
    assert_eq!(
        (r.stderr_str().as_str(), r.stderr_truncated),
        ("done\n", false)
    );
}

#[test]
fn a_slow_reader_does_not_stall_other_commands() {
    let env = env();
    let vm = Arc::new(env.running_vm().unwrap());
    let slow = {
        let vm = Arc::clone(&vm);
        std::thread::spawn(move || {
            let mut bytes = 0usize;
            let (code, _) = vm
                .run_streaming("head -c 16777216 /dev/zero", &RunOptions::raw(), &mut |o| {
                    if let Output::Stdout(b) = o {
                        bytes += b.len();
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
                .unwrap();
            (code, bytes, Instant::now())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(
            vm.run_with("echo quick", &RunOptions::raw())
                .unwrap()
                .output(),
            "quick"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }
    let quick_done = Instant::now();
    let (code, bytes, slow_done) = slow.join().unwrap();
    assert_eq!((code, bytes), (0, 16 << 20));
    assert!(
        slow_done > quick_done,
        "the slow reader finished first: the test proves nothing"
    );
}
