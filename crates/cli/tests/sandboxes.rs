//! Named, persistent sandboxes through the CLI, as a user types it (real VMs).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{alive, json, ok, pid_in, private_data_dir, run_in, smolvm, text};

#[test]
fn full_lifecycle_as_a_user_types_it() {
    let data = private_data_dir("lifecycle");
    let d = data.as_path();
    assert_eq!(
        ok(&run_in(
            d,
            &[
                "create",
                "--name",
                "web",
                "--env",
                "GREETING=hello there",
                "--memory",
                "256"
            ]
        )),
        "web\n"
    );
    let listed = ok(&run_in(d, &["ls"]));
    assert!(
        listed.contains("web") && listed.contains("running") && listed.contains("256M"),
        "{listed}"
    );

    // exec: words joined, parsed by the guest shell, exit code passed through, env visible.
    let out = run_in(
        d,
        &[
            "exec",
            "web",
            "--",
            "echo \"$GREETING from $(hostname)\";",
            "exit 7",
        ],
    );
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "hello there from web\n");
    let out = run_in(
        d,
        &["exec", "web", "--env", "ONE_OFF=x", "--", "echo $ONE_OFF"],
    );
    assert_eq!(text(&out.stdout), "x\n");

    // env set / list (masked unless asked) / unset.
    assert_eq!(
        ok(&run_in(d, &["env", "set", "web", "A=1", "B=two words"])),
        "A\nB\nGREETING\n"
    );
    assert_eq!(
        ok(&run_in(d, &["env", "list", "web"])),
        "A=********\nB=********\nGREETING=********\n"
    );
    let v = json(&run_in(
        d,
        &["--json", "env", "list", "web", "--show-values"],
    ));
    assert_eq!(v["data"]["vars"]["B"], "two words");
    assert_eq!(ok(&run_in(d, &["env", "unset", "web", "A", "NOPE"])), "A\n");
    assert_eq!(
        ok(&run_in(d, &["env", "set", "web", "--replace", "ONLY=1"])),
        "ONLY\n"
    );
    ok(&run_in(d, &["env", "set", "web", "B=kept"]));

    // stop keeps the sandbox and its variables; exec on it says how to start it.
    ok(&run_in(d, &["stop", "web"]));
    assert!(!ok(&run_in(d, &["ls"])).contains("web"));
    assert!(ok(&run_in(d, &["ls", "--all"])).contains("stopped"));
    let out = run_in(d, &["exec", "web", "--", "true"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(
        text(&out.stderr).contains("smolvm start web"),
        "{}",
        text(&out.stderr)
    );
    ok(&run_in(d, &["start", "web"]));
    assert_eq!(
        text(&run_in(d, &["exec", "web", "--", "echo $ONLY-$B"]).stdout),
        "1-kept\n"
    );
    ok(&run_in(d, &["restart", "web"]));
    assert_eq!(
        text(&run_in(d, &["exec", "web", "--", "echo $ONLY-$B"]).stdout),
        "1-kept\n"
    );

    // info, logs.
    let v = json(&run_in(d, &["--json", "info", "web"]));
    assert_eq!(v["data"]["name"], "web");
    assert_eq!(v["data"]["state"], "running");
    assert!(v["data"]["qemu_pid"].as_u64().is_some());
    let logs = ok(&run_in(d, &["logs", "web", "--tail", "5"]));
    assert!(logs.contains("==> supervisor <=="), "{logs}");

    // rm refuses a running sandbox without --force, then removes it completely.
    let out = run_in(d, &["rm", "web"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(text(&out.stderr).contains("smolvm rm --force web"));
    let qemu = v["data"]["qemu_pid"].as_u64().unwrap() as i32;
    assert_eq!(ok(&run_in(d, &["rm", "--force", "web"])), "web\n");
    assert!(!alive(qemu));
    assert!(!data.join("vms/web").exists());
    assert_eq!(
        ok(&run_in(d, &["ls", "--all"])).lines().count(),
        1,
        "only the header is left"
    );
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn two_processes_exec_into_one_sandbox_at_once() {
    let data = private_data_dir("twoexec");
    ok(&run_in(&data, &["create", "--name", "shared"]));
    let started = Instant::now();
    let spawn = |word: &str| {
        smolvm()
            .env("SMOLVM_DATA_DIR", &data)
            .args(["exec", "shared", "--", &format!("sleep 2; echo {word}")])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("first"));
        let b = s.spawn(|| spawn("second"));
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    assert_eq!(text(&a.stdout), "first\n");
    assert_eq!(text(&b.stdout), "second\n");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "ran one after the other: {:?}",
        started.elapsed()
    );
    ok(&run_in(&data, &["rm", "--force", "shared"]));
    std::fs::remove_dir_all(&data).unwrap();
}

fn sigkill(pid: i32) {
    // SAFETY: kill with plain integers.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

fn wait_dead(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(pid), "{pid} still alive");
}

#[test]
fn killed_supervisor_or_qemu_shows_as_crashed_and_rm_cleans_up() {
    let data = private_data_dir("crash");
    let d = data.as_path();
    ok(&run_in(d, &["create", "--name", "sup"]));
    ok(&run_in(d, &["create", "--name", "emu"]));
    let sup_dir = d.join("vms/sup");
    let emu_dir = d.join("vms/emu");
    let supervisor = pid_in(&sup_dir.join("supervisor.pid")).unwrap();
    let qemu_of_sup = pid_in(&sup_dir.join("qemu.pid")).unwrap();
    let qemu = pid_in(&emu_dir.join("qemu.pid")).unwrap();

    sigkill(supervisor);
    wait_dead(qemu_of_sup); // PDEATHSIG: QEMU dies with its supervisor
    sigkill(qemu);
    wait_dead(qemu);
    std::thread::sleep(Duration::from_millis(500));

    let started = Instant::now();
    let v = json(&run_in(d, &["--json", "ls", "--all"]));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ls took {:?}",
        started.elapsed()
    );
    let state = |name: &str| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state("sup"), "crashed");
    assert_eq!(state("emu"), "crashed");
    let info = json(&run_in(d, &["--json", "info", "emu"]));
    assert!(
        info["data"]["reason"]
            .as_str()
            .unwrap()
            .contains("QEMU exited"),
        "{info}"
    );
    let out = run_in(d, &["exec", "sup", "--", "true"]);
    assert_ne!(out.status.code(), Some(0));

    ok(&run_in(d, &["rm", "sup", "emu"]));
    assert!(!sup_dir.exists() && !emu_dir.exists());
    assert_eq!(
        json(&run_in(d, &["--json", "ls", "--all"]))["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn ten_concurrent_creates_get_ten_distinct_names_and_all_boot() {
    let data = private_data_dir("tencreate");
    let outputs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..10)
            .map(|_| s.spawn(|| run_in(&data, &["create", "--memory", "128"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut names: Vec<String> = outputs.iter().map(|o| ok(o).trim().to_string()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 10, "{names:?}");
    for name in &names {
        assert_eq!(
            text(&run_in(&data, &["exec", name, "--", "hostname"]).stdout),
            format!("{name}\n")
        );
    }
    let v = json(&run_in(&data, &["--json", "ls"]));
    assert_eq!(v["data"].as_array().unwrap().len(), 10);
    ok(&run_in(&data, &["rm", "--all", "--force"]));
    assert!(common::vm_dirs(&data).is_empty());
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn json_envelope_for_success_and_each_error_class() {
    let data = private_data_dir("envelope");
    let d = data.as_path();
    let check_error = |args: &[&str], code: &str, exit: i32| {
        let out = run_in(d, args);
        assert_eq!(
            out.status.code(),
            Some(exit),
            "{args:?}: {}",
            text(&out.stdout)
        );
        let v = json(&out);
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        assert!(v["error"].get("hint").is_some());
        v
    };
    let v = json(&run_in(d, &["--json", "create", "--name", "env1"]));
    assert_eq!(
        v,
        serde_json::json!({ "ok": true, "data": { "name": "env1", "state": "running" } })
    );
    check_error(&["--json", "create", "--name", "env1"], "invalid_input", 2);
    let v = check_error(
        &["--json", "create", "--name", "Bad_Name"],
        "invalid_input",
        2,
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lowercase"),
        "{v}"
    );
    check_error(&["--json", "exec", "nope", "--", "true"], "not_found", 3);
    check_error(
        &["--json", "env", "set", "env1", "1BAD=x"],
        "invalid_input",
        2,
    );
    check_error(
        &["--json", "env", "set", "env1", "NOEQUALS"],
        "invalid_input",
        2,
    );
    check_error(&["--json", "rm", "env1"], "sandbox_running", 4);
    check_error(
        &["--json", "exec", "env1", "--timeout", "1", "--", "sleep 30"],
        "timeout",
        124,
    );
    ok(&run_in(d, &["stop", "env1"]));
    let v = check_error(
        &["--json", "exec", "env1", "--", "true"],
        "vm_not_running",
        4,
    );
    assert_eq!(v["error"]["hint"], "smolvm start env1");
    let v = json(&run_in(d, &["--json", "rm", "env1"]));
    assert_eq!(v["data"]["removed"][0], "env1");
    assert!(Path::new(&data)
        .join("vms")
        .read_dir()
        .unwrap()
        .next()
        .is_none());
    std::fs::remove_dir_all(&data).unwrap();
}
