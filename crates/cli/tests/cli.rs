//! The `smolvm` binary as a user types it: real VMs, real processes.

mod common;

use std::time::{Duration, Instant};

use common::{alive, json, ok, pid_in, private_data_dir, run, run_in, smolvm, text, vm_dirs};

#[test]
fn run_joins_words_lets_the_guest_shell_parse_and_passes_the_exit_code() {
    let out = run(&["run", "--", "echo $HOME;", "echo err >&2;", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "/root\n");
    assert!(text(&out.stderr).contains("err"));
    let out = run(&["run", "--", "echo $HOME; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(text(&out.stdout), "/root\n");
}

#[test]
fn run_raw_env_and_json() {
    let out = run(&[
        "run",
        "--env",
        "GREETING=hello world",
        "--",
        "echo \"$GREETING\"",
    ]);
    assert_eq!(text(&out.stdout), "hello world\n", "{}", text(&out.stderr));
    let out = run(&[
        "run",
        "--raw",
        "--env",
        "GREETING=x",
        "--",
        "echo \"[$GREETING]\"",
    ]);
    assert_eq!(text(&out.stdout), "[]\n");
    let out = run(&["--json", "run", "--", "echo hi; exit 2"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["ok"], true);
    assert_eq!(v["data"]["stdout"], "hi\n");
    assert_eq!(v["data"]["exit_code"], 2);
}

#[test]
fn run_timeout_exits_124_and_bad_input_exits_2() {
    let out = run(&["run", "--timeout", "1", "--", "sleep 100"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("timed out"),
        "{}",
        text(&out.stderr)
    );
    // 0 means no limit (the default, 30 s, is unit-tested with the argument parser).
    let out = run(&["run", "--timeout", "0", "--", "sleep 1; echo slept"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "slept\n");
    for args in [
        vec!["run", "--timeout", "nan", "--", "true"],
        vec!["run", "--memory", "32", "--", "true"],
        vec!["run", "--env", "NOEQUALS", "--", "true"],
        vec!["run", "--env", "1BAD=x", "--", "true"],
        vec!["run", "--", ""],
    ] {
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("error"), "{args:?}");
    }
    let out = run(&["--json", "run", "--memory", "32", "--", "true"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["code"], "invalid_input");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("mem_size_mib"));
}

#[test]
fn missing_qemu_and_missing_setup_say_how_to_fix() {
    let out = smolvm()
        .env("SMOLVM_QEMU", "/nonexistent/qemu")
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("apt-get install qemu-system-x86"),
        "{}",
        text(&out.stderr)
    );
    let empty = std::env::temp_dir().join(format!("smolvm-cli-empty-{}", std::process::id()));
    let out = smolvm()
        .env("SMOLVM_DATA_DIR", &empty)
        .args(["run", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("smolvm setup"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn doctor_reports_each_check_in_json() {
    let out = run(&["--json", "doctor"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let checks = v["data"]["checks"].as_array().unwrap();
    let names: Vec<&str> = checks.iter().map(|c| c["name"].as_str().unwrap()).collect();
    for name in ["qemu", "qemu-img", "accel", "kernel", "image minimal"] {
        assert!(names.contains(&name), "{names:?}");
    }
    let accel = checks.iter().find(|c| c["name"] == "accel").unwrap();
    assert!(
        accel["detail"].as_str().unwrap().starts_with("kvm")
            || accel["detail"].as_str().unwrap().starts_with("tcg")
    );
}

#[test]
fn killing_the_cli_mid_run_leaves_nothing_behind() {
    let data = private_data_dir("kill");
    let mut child = smolvm()
        .env("SMOLVM_DATA_DIR", &data)
        .args(["run", "--", "sleep 600"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let dir = loop {
        if let Some(dir) = vm_dirs(&data)
            .into_iter()
            .find(|d| d.join("api.sock").exists())
        {
            break dir;
        }
        assert!(Instant::now() < deadline, "the VM never came up");
        std::thread::sleep(Duration::from_millis(50));
    };
    let supervisor = pid_in(&dir.join("supervisor.pid")).expect("supervisor pid");
    std::thread::sleep(Duration::from_millis(500));
    // SIGKILL: the CLI gets no chance to clean up; the supervisor must see its owner go.
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while (dir.exists() || alive(supervisor)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!alive(supervisor), "supervisor {supervisor} left running");
    let leaked: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| text(&c))
        .filter(|c| c.contains(&data.display().to_string()))
        .collect();
    assert!(leaked.is_empty(), "processes left: {leaked:?}");
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn a_data_dir_others_can_write_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let open = std::env::temp_dir().join(format!("smolvm-cli-open-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&open);
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = run_in(&open, &["ls"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&open.display().to_string()), "{stderr}");
    assert!(stderr.contains("group or others can write"), "{stderr}");
    assert!(
        stderr.contains(&format!("chmod 700 {}", open.display())),
        "{stderr}"
    );
    let envelope = json(&run_in(&open, &["ls", "--json"]));
    assert_eq!(envelope["error"]["code"], "unsafe_data_dir", "{envelope}");
    // A readable one, as older versions made them, is tightened instead.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    ok(&run_in(&open, &["ls"]));
    let mode = std::fs::metadata(&open).unwrap().permissions().mode() & 0o777;
    let _ = std::fs::remove_dir_all(&open);
    assert_eq!(mode, 0o700);
}
