//! Snapshots, restore, pause and resume through the CLI, as a user types them (real VMs, in
//! the default data directory; names carry the test's pid so that runs do not collide).

mod common;

use common::{json, ok, run, text};

/// Removes the sandboxes and snapshots of a test, even when it fails halfway.
#[derive(Default)]
struct Cleanup {
    sandboxes: Vec<String>,
    snapshots: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for name in &self.sandboxes {
            let _ = run(&["rm", "--force", name]);
        }
        for id in &self.snapshots {
            let _ = run(&["snapshot", "rm", id]);
        }
    }
}

/// A name unique to this test run.
fn unique(what: &str) -> String {
    format!("snapt-{}-{what}", std::process::id())
}

/// Asserts that `args` fail with exit code `exit` and returns stderr.
fn fails(args: &[&str], exit: i32) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(exit),
        "{args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stderr)
}

#[test]
fn snapshot_restore_pause_resume_and_remove() {
    let mut cleanup = Cleanup::default();
    let (source, copy, snap) = (unique("src"), unique("copy"), unique("snap"));

    // A cold-booted source with a variable and a file in it.
    cleanup.sandboxes.push(source.clone());
    let created = run(&[
        "create",
        "--cold",
        "--image",
        "minimal",
        "--name",
        &source,
        "--env",
        "GREETING=hello snapshot",
    ]);
    assert_eq!(ok(&created), format!("{source}\n"));
    ok(&run(&["exec", &source, "--", "echo kept > /root/note"]));

    let stderr = fails(
        &["snapshot", "create", &source, "--snapshot-id", "Bad_Id"],
        2,
    );
    assert!(stderr.contains("snapshot id"), "{stderr}");
    cleanup.snapshots.push(snap.clone());
    let out = run(&["snapshot", "create", &source, "--snapshot-id", &snap]);
    assert_eq!(ok(&out), format!("{snap}\n"));
    assert!(
        text(&out.stderr).contains("saved in"),
        "{}",
        text(&out.stderr)
    );

    let listed = json(&run(&["--json", "snapshot", "ls"]));
    let entry = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == snap.as_str())
        .unwrap_or_else(|| panic!("{snap} not listed: {listed}"))
        .clone();
    assert_eq!(entry["source_vm"], source.as_str());
    assert_eq!(entry["image"], "minimal");
    assert_eq!(entry["kind"], "snapshot");
    assert!(entry["stats"]["memory_bytes"].as_u64().unwrap() > 0);
    let listed = ok(&run(&["snapshot", "ls"]));
    assert!(!listed.contains("template"), "{listed}");

    // The copy carries on where the source was: same file and variable, its own hostname.
    cleanup.sandboxes.push(copy.clone());
    assert_eq!(
        ok(&run(&["snapshot", "restore", &snap, "--name", &copy])),
        format!("{copy}\n")
    );
    assert_eq!(
        ok(&run(&[
            "exec",
            &copy,
            "--",
            "cat /root/note; echo \"$GREETING\"; hostname"
        ])),
        format!("kept\nhello snapshot\n{copy}\n")
    );

    // Paused: listed as such, commands refused with the not-running code, rm and start
    // refused; resume lets it run again.
    ok(&run(&["pause", &copy]));
    let state = json(&run(&["--json", "info", &copy]))["data"]["state"].clone();
    assert_eq!(state, "paused");
    assert!(ok(&run(&["ls"])).contains(&copy));
    let stderr = fails(&["exec", &copy, "--", "true"], 4);
    assert!(stderr.contains("paused"), "{stderr}");
    assert!(
        stderr.contains(&format!("smolvm resume {copy}")),
        "{stderr}"
    );
    let stderr = fails(&["rm", &copy], 4);
    assert!(stderr.contains("paused"), "{stderr}");
    let stderr = fails(&["start", &copy], 4);
    assert!(
        stderr.contains(&format!("smolvm resume {copy}")),
        "{stderr}"
    );
    ok(&run(&["resume", &copy]));
    assert_eq!(ok(&run(&["exec", &copy, "--", "cat /root/note"])), "kept\n");

    // Removed snapshots are gone; the sandbox restored from one keeps working.
    assert_eq!(ok(&run(&["snapshot", "rm", &snap])), format!("{snap}\n"));
    let listed = json(&run(&["--json", "snapshot", "ls"]));
    assert!(
        !listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == snap.as_str()),
        "{listed}"
    );
    assert_eq!(ok(&run(&["exec", &copy, "--", "cat /root/note"])), "kept\n");
}

#[test]
fn unknown_snapshots_and_bad_ids_are_refused_without_a_vm() {
    let missing = unique("missing");
    let stderr = fails(&["snapshot", "restore", &missing], 3);
    assert!(stderr.contains(&missing), "{stderr}");
    let out = run(&["--json", "snapshot", "restore", &missing]);
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out);
    assert_eq!(v["error"]["code"], "not_found");
    assert_eq!(v["error"]["hint"], "smolvm snapshot ls");
    fails(&["snapshot", "rm", &missing], 3);
    // The id is checked before the sandbox is looked up.
    fails(
        &["snapshot", "create", &missing, "--snapshot-id", "../x"],
        2,
    );
    fails(&["pause", &missing], 3);
    fails(&["resume", &missing], 3);
}
