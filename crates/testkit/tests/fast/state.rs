//! What a sandbox keeps: managed environment variables and files, through the SDK, the
//! supervisor and the agent (fake backend; the "guest" paths are temp folders of the host).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::env;
use smolvm::{Error, RunOptions, VmConfig};

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn env_vars_set_list_and_unset() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let keys = vm
        .set_env_vars(
            &vars(&[("A_KEY", "1"), ("SPACED", "two words; 'quoted' $x")]),
            true,
        )
        .unwrap();
    assert_eq!(keys, ["A_KEY", "SPACED"]);
    // Login shells see them (values verbatim); raw shells do not read the profile.
    assert_eq!(
        vm.run("echo \"$A_KEY|$SPACED\"").unwrap().output(),
        "1|two words; 'quoted' $x"
    );
    assert_eq!(
        vm.run_with("echo ${A_KEY:-none}", &RunOptions::raw())
            .unwrap()
            .output(),
        "none"
    );
    // Merge adds; a replace drops the rest.
    vm.set_env_vars(&vars(&[("B_KEY", "b")]), true).unwrap();
    assert_eq!(vm.list_env_vars().unwrap().len(), 3);
    let removed = vm.unset_env_vars(&["A_KEY", "NEVER_SET"]).unwrap();
    assert_eq!(removed, vars(&[("A_KEY", "1")]));
    assert_eq!(vm.run("echo ${A_KEY:-gone}").unwrap().output(), "gone");
    assert_eq!(
        vm.set_env_vars(&vars(&[("ONLY", "this")]), false).unwrap(),
        ["ONLY"]
    );
    assert_eq!(vm.list_env_vars().unwrap(), vars(&[("ONLY", "this")]));
}

#[test]
fn invalid_env_vars_change_nothing() {
    let env = env();
    let vm = env.running_vm().unwrap();
    vm.set_env_vars(&vars(&[("KEEP", "kept")]), true).unwrap();
    for bad in [
        vars(&[("GOOD", "1"), ("bad-key", "2")]),
        vars(&[("GOOD", "1"), ("1LEADING_DIGIT", "2")]),
        vars(&[("GOOD", "1"), ("", "2")]),
        vars(&[("GOOD", "nul\0byte")]),
        vars(&[("GOOD", &"x".repeat(smolvm::protocol::MAX_ENV_ENTRY_BYTES))]),
    ] {
        let err = vm.set_env_vars(&bad, true).unwrap_err();
        assert!(matches!(err, Error::InvalidEnv(_)), "{bad:?}: {err:?}");
        let err = vm.set_env_vars(&bad, false).unwrap_err();
        assert!(matches!(err, Error::InvalidEnv(_)), "{bad:?}: {err:?}");
    }
    assert_eq!(vm.list_env_vars().unwrap(), vars(&[("KEEP", "kept")]));
    assert_eq!(vm.run("echo ${GOOD:-unset}").unwrap().output(), "unset");
}

#[test]
fn boot_time_env_vars_are_in_place_when_start_returns() {
    let env = env();
    let config = VmConfig {
        env_vars: vars(&[("FROM_CONFIG", "at boot"), ("OTHER", "2")]),
        ..env.config()
    };
    let vm = env.vm(config).unwrap();
    vm.start().unwrap();
    assert_eq!(
        vm.run("echo $FROM_CONFIG-$OTHER").unwrap().output(),
        "at boot-2"
    );
    assert_eq!(vm.list_env_vars().unwrap().len(), 2);
}

#[test]
fn a_persistent_sandbox_keeps_its_env_vars_across_stop_and_start() {
    let env = env();
    let config = VmConfig {
        vm_id: Some("envkeeper".into()),
        env_vars: vars(&[("BOOT", "1")]),
        ..env.config()
    };
    let vm = smolvm::SmolVm::with_launcher(config, env.data(), true, env.launcher()).unwrap();
    vm.start().unwrap();
    vm.set_env_vars(&vars(&[("LATER", "2")]), true).unwrap();
    vm.unset_env_vars(&["BOOT"]).unwrap();
    vm.stop().unwrap();
    // The fake guest's state is wiped at every start (as a RAM-backed guest's), so only the
    // supervisor's save at stop can bring them back.
    vm.start().unwrap();
    assert_eq!(vm.list_env_vars().unwrap(), vars(&[("LATER", "2")]));
    assert_eq!(
        vm.run("echo ${BOOT:-none} $LATER").unwrap().output(),
        "none 2"
    );
    vm.delete().unwrap();
}

/// Every entry under `root` as (relative path, kind, mode, content or link target).
fn tree(root: &Path) -> Vec<(String, char, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = meta.permissions().mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((rel, 'l', 0, target.into_os_string().into_encoded_bytes()));
            } else if meta.is_dir() {
                out.push((rel, 'd', mode, Vec::new()));
                stack.push(path);
            } else {
                out.push((rel, 'f', mode, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn files_round_trip() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let guest = env.scratch("guest");
    let local = env.scratch("local");
    // In memory, with a mode and missing parents.
    let path = format!("{}/made/on/the/way/data.bin", guest.display());
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    vm.write_file(&path, &data, 0o640).unwrap();
    assert_eq!(vm.read_file(&path).unwrap(), data);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    // A local file up (into a directory: the name is appended) and back down.
    let source = local.join("up.txt");
    std::fs::write(&source, b"uploaded\n").unwrap();
    std::fs::set_permissions(&source, std::fs::Permissions::from_mode(0o751)).unwrap();
    let written = vm
        .upload_file(&source, &format!("{}/", guest.display()))
        .unwrap();
    assert_eq!(written, format!("{}/up.txt", guest.display()));
    let back = vm.download_file(&written, &local.join("down.txt")).unwrap();
    assert_eq!(std::fs::read(&back).unwrap(), b"uploaded\n");
    let mode = std::fs::metadata(&back).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o751);
}

#[test]
fn trees_round_trip() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let src = env.scratch("src");
    std::fs::create_dir_all(src.join("a/b/c")).unwrap();
    std::fs::create_dir(src.join("empty")).unwrap();
    std::fs::write(src.join("top.txt"), b"top").unwrap();
    std::fs::write(src.join("a/b/c/deep.bin"), vec![9u8; 700_000]).unwrap();
    std::fs::write(src.join("a/script.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        src.join("a/script.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(src.join("empty"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::os::unix::fs::symlink("b/c/deep.bin", src.join("a/link")).unwrap();
    let guest = format!("{}/tree", env.scratch("guest").display());
    vm.upload_dir(&src, &guest).unwrap();
    assert_eq!(tree(Path::new(&guest)), tree(&src));
    let listed = vm.list_tree(&guest).unwrap();
    assert_eq!(listed.len(), tree(&src).len());
    let dest = env.scratch("dest").join("copy");
    vm.download_dir(&guest, &dest).unwrap();
    assert_eq!(tree(&dest), tree(&src));
}

#[test]
fn missing_paths_are_clear_errors_and_leave_nothing() {
    let env = env();
    let vm = env.running_vm().unwrap();
    let guest = env.scratch("guest");
    let local = env.scratch("local");
    let missing = format!("{}/no-such-file", guest.display());
    let err = vm.read_file(&missing).unwrap_err();
    assert!(err.to_string().contains("no-such-file"), "{err}");
    let dest = local.join("never");
    assert!(vm.download_file(&missing, &dest).is_err());
    assert!(vm.download_dir(&missing, &dest).is_err());
    assert!(!dest.exists());
    let err = vm
        .upload_file(&local.join("absent.txt"), &format!("{}/x", guest.display()))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotFound {
                what: "local file",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!guest.join("x").exists());
    // Missing parents refused when asked to.
    std::fs::write(local.join("f"), b"f").unwrap();
    let deep = format!("{}/p/q/f", guest.display());
    assert!(vm.upload_file_with(&local.join("f"), &deep, false).is_err());
    assert!(!guest.join("p").exists());
    // Guest paths must be absolute.
    let err = vm.write_file("relative/path", b"x", 0o600).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig { .. }), "{err:?}");
    // The VM is fine afterwards.
    assert_eq!(vm.run("echo ok").unwrap().output(), "ok");
}
