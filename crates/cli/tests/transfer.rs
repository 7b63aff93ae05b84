//! `smolvm cp`, `smolvm exec -i` and `smolvm shell` as a user types them (real VMs).

mod common;

use std::io::Write;
use std::process::Stdio;

use common::{ok, private_data_dir, run_in, smolvm, text};

#[test]
fn cp_files_and_trees_both_ways() {
    let data = private_data_dir("cp");
    let d = data.as_path();
    ok(&run_in(
        d,
        &["create", "--name", "box", "--image", "minimal"],
    ));
    let work = data.join("work");
    std::fs::create_dir_all(work.join("tree/sub")).unwrap();
    std::fs::write(work.join("hello.txt"), b"hello\n").unwrap();
    std::fs::write(work.join("tree/sub/deep.txt"), b"deep\n").unwrap();

    let local = work.join("hello.txt").display().to_string();
    assert_eq!(
        ok(&run_in(d, &["cp", &local, "box:/root/"])),
        "/root/hello.txt\n"
    );
    assert_eq!(
        text(&run_in(d, &["exec", "box", "--", "cat /root/hello.txt"]).stdout),
        "hello\n"
    );
    let back = work.join("back.txt").display().to_string();
    ok(&run_in(d, &["cp", "box:/root/hello.txt", &back]));
    assert_eq!(std::fs::read(&back).unwrap(), b"hello\n");

    let tree = work.join("tree").display().to_string();
    let out = run_in(d, &["cp", &tree, "box:/srv/"]);
    assert_eq!(out.status.code(), Some(2), "a directory needs -r");
    // Into an existing directory the tree keeps its name, as with cp -r.
    ok(&run_in(d, &["exec", "box", "--", "mkdir -p /srv"]));
    ok(&run_in(d, &["cp", "-r", &tree, "box:/srv/"]));
    assert_eq!(
        text(&run_in(d, &["exec", "box", "--", "cat /srv/tree/sub/deep.txt"]).stdout),
        "deep\n"
    );
    let out_dir = work.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    ok(&run_in(
        d,
        &["cp", "-r", "box:/srv/tree", &out_dir.display().to_string()],
    ));
    assert_eq!(
        std::fs::read(out_dir.join("tree/sub/deep.txt")).unwrap(),
        b"deep\n"
    );

    let out = run_in(d, &["--json", "cp", "box:relative", &back]);
    assert_ne!(out.status.code(), Some(0));
    let out = run_in(
        d,
        &[
            "cp",
            "box:/no/such/file",
            &work.join("x").display().to_string(),
        ],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(!work.join("x").exists());
    ok(&run_in(d, &["rm", "--force", "box"]));
    std::fs::remove_dir_all(&data).unwrap();
}

#[test]
fn exec_interactive_pipes_stdin_and_shell_runs_on_a_terminal() {
    let data = private_data_dir("shell");
    let d = data.as_path();
    ok(&run_in(
        d,
        &["create", "--name", "term", "--image", "minimal"],
    ));

    let mut child = smolvm()
        .env("SMOLVM_DATA_DIR", d)
        .args(["exec", "-i", "term", "--", "tr a-z A-Z; exit 4"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"piped through\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(text(&out.stdout), "PIPED THROUGH\n");

    // `script` gives `smolvm shell` a terminal of its own; the typed lines arrive at the
    // guest shell's prompt, and the guest shell's exit code comes back.
    let command = format!("{} shell term", env!("CARGO_BIN_EXE_smolvm"));
    let mut child = std::process::Command::new("script")
        .env("SMOLVM_DATA_DIR", d)
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"[ -t 0 ] && echo tty-yes; echo $((6*7)); exit 3\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let screen = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{screen}");
    assert!(
        screen.contains("tty-yes") && screen.contains("42"),
        "{screen}"
    );
    ok(&run_in(d, &["rm", "--force", "term"]));
    std::fs::remove_dir_all(&data).unwrap();
}
