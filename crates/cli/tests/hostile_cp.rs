//! `smolvm cp -r` from a hostile guest (real VM): the issue's symlink chain is refused with
//! nothing written, and a non-empty target is never merged into without `--overwrite`.

mod common;

use common::{json, ok, private_data_dir, run_in};

#[test]
fn cp_refuses_the_symlink_chain_and_never_merges() {
    let data = private_data_dir("hostile-cp");
    let d = data.as_path();
    ok(&run_in(
        d,
        &["create", "--name", "box", "--image", "minimal"],
    ));
    // Guest code builds the chain of the issue.
    ok(&run_in(
        d,
        &[
            "exec",
            "box",
            "--",
            "mkdir -p /out/d && cd /out && ln -s .. d/l && ln -s d/l/.. u1 \
             && for i in $(seq 2 16); do ln -s u$((i-1))/.. u$i; done \
             && ln -s u16/etc etc && echo data > file",
        ],
    ));
    let work = data.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let work_s = work.display().to_string();
    let out = run_in(d, &["--json", "cp", "-r", "box:/out", &work_s]);
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(json(&out)["error"]["code"], "unsafe_tree");
    assert_eq!(
        std::fs::read_dir(&work).unwrap().count(),
        0,
        "nothing written: no {}/out, no partial folder",
        work.display()
    );

    // A target that exists and is not empty: refused with a hint, untouched; --overwrite
    // replaces it.
    ok(&run_in(
        d,
        &[
            "exec",
            "box",
            "--",
            "mkdir -p /tree && echo theirs > /tree/.bashrc",
        ],
    ));
    std::fs::create_dir_all(work.join("tree")).unwrap();
    std::fs::write(work.join("tree/.bashrc"), b"mine\n").unwrap();
    let out = run_in(d, &["--json", "cp", "-r", "box:/tree", &work_s]);
    assert_eq!(out.status.code(), Some(2));
    let envelope = json(&out);
    assert_eq!(envelope["error"]["code"], "destination_not_empty");
    assert!(envelope["error"]["hint"]
        .as_str()
        .unwrap()
        .contains("--overwrite"));
    assert_eq!(std::fs::read(work.join("tree/.bashrc")).unwrap(), b"mine\n");
    ok(&run_in(
        d,
        &["cp", "-r", "--overwrite", "box:/tree", &work_s],
    ));
    assert_eq!(
        std::fs::read(work.join("tree/.bashrc")).unwrap(),
        b"theirs\n"
    );
    ok(&run_in(d, &["rm", "--force", "box"]));
    std::fs::remove_dir_all(&data).unwrap();
}
