//! Images: the Debian guest, per-VM copy-on-write disks, custom root filesystems, building an
//! image. Every test boots real VMs on the images `smolvm setup` built.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use smolvm::image::{self, debian, NoProgress, RootFs};
use smolvm::{DataDir, Error, RunOptions, SmolVm, VmConfig};

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn debian_base() -> PathBuf {
    image::rootfs_of(&DataDir::from_env(), image::DEBIAN)
        .expect("the debian image: run `smolvm setup` before the VM tests")
}

/// Whether `file` exists in the ext4 image (read with debugfs, no mount).
fn base_has(base: &Path, file: &str) -> bool {
    image::disk::ext_has_regular_file(base, file).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smolvm-images-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_default_guest_is_debian_with_python_its_own_hostname_and_a_writable_tmp() {
    let vm = common::vm();
    assert_eq!(vm.config().image, "debian");
    assert!(matches!(vm.config().rootfs, RootFs::Disk(_)));
    assert_eq!(vm.run("python3 -c 'print(6*7)'").unwrap().output(), "42");
    assert!(vm
        .run("cat /etc/os-release")
        .unwrap()
        .output()
        .contains("bookworm"));
    assert_eq!(vm.run("hostname").unwrap().output(), vm.vm_id());
    assert_eq!(
        vm.run("echo hi > /tmp/t && cat /tmp/t && stat -f -c %T /tmp")
            .unwrap()
            .output(),
        "hi\ntmpfs"
    );
    // Login shells read /etc/profile.d/*.sh; the managed variables live there.
    vm.run("echo 'export FROM_PROFILE_D=yes' > /etc/profile.d/probe.sh")
        .unwrap();
    assert_eq!(vm.run("echo $FROM_PROFILE_D").unwrap().output(), "yes");
    vm.set_env_vars(&[("API_KEY".into(), "it's $ecret".into())].into(), true)
        .unwrap();
    assert_eq!(vm.run("echo \"$API_KEY\"").unwrap().output(), "it's $ecret");
    assert_eq!(vm.run("printenv API_KEY").unwrap().output(), "it's $ecret");
    assert_eq!(
        vm.run_with("echo \"[$API_KEY]\"", &RunOptions::raw())
            .unwrap()
            .output(),
        "[]"
    );
    // The disk is the VM's writable overlay, not the base.
    assert!(vm.paths().overlay().is_file());
    assert_eq!(
        vm.run("touch /etc/written && echo ok").unwrap().output(),
        "ok"
    );
}

#[test]
fn overlays_keep_vms_apart_and_never_write_the_base() {
    let base = debian_base();
    let before = sha256(&base);
    let modified = std::fs::metadata(&base).unwrap().modified().unwrap();
    let a = common::vm();
    let b = common::vm();
    a.run("echo from-a > /root/only-in-a && sync").unwrap();
    assert_eq!(a.run("cat /root/only-in-a").unwrap().output(), "from-a");
    assert_ne!(b.run("cat /root/only-in-a").unwrap().exit_code, 0);
    b.run("rm -f /usr/bin/python3").unwrap();
    assert_eq!(a.run("python3 -c 'print(1)'").unwrap().output(), "1");
    let overlay_a = a.paths().overlay();
    assert!(overlay_a.is_file() && overlay_a != b.paths().overlay());
    drop(a);
    drop(b);
    assert!(!overlay_a.exists(), "the overlay goes with its VM");
    assert!(!base_has(&base, "/root/only-in-a"));
    assert!(base_has(&base, "/usr/bin/python3.11"));
    assert_eq!(sha256(&base), before, "the base image changed");
    assert_eq!(
        std::fs::metadata(&base).unwrap().modified().unwrap(),
        modified
    );
}

#[test]
fn a_persistent_sandbox_keeps_its_files_and_variables_across_stop_and_start() {
    let data = DataDir::from_env();
    let config = VmConfig {
        vm_id: Some(format!("persist-{}", std::process::id())),
        env_vars: [("BOOT_VAR".to_string(), "at-boot".to_string())].into(),
        ..VmConfig::default()
    };
    let vm = SmolVm::new_persistent(config, data.clone()).unwrap();
    vm.start().unwrap();
    vm.run("echo kept > /root/note && mkdir -p /srv/app && echo v1 > /srv/app/version")
        .unwrap();
    vm.set_env_vars(&[("LATER".into(), "set-later".into())].into(), true)
        .unwrap();
    let overlay = vm.paths().overlay();
    vm.stop().unwrap();
    assert!(overlay.is_file(), "a stopped sandbox keeps its disk");
    vm.start().unwrap();
    assert_eq!(
        vm.run("cat /root/note /srv/app/version").unwrap().output(),
        "kept\nv1"
    );
    assert_eq!(
        vm.run("echo $BOOT_VAR $LATER").unwrap().output(),
        "at-boot set-later"
    );
    // Another handle, as another process would get, sees the same disk.
    let attached = SmolVm::attach_in(data, vm.vm_id()).unwrap();
    assert_eq!(attached.run("cat /root/note").unwrap().output(), "kept");
    drop(attached);
    let dir = vm.paths().dir().to_path_buf();
    vm.delete().unwrap();
    assert!(!dir.exists(), "delete removes the overlay with the sandbox");
}

#[test]
fn custom_root_filesystems_boot_with_the_agent_or_fail_clearly() {
    let data = DataDir::from_env();
    let dir = scratch("custom");
    // The Debian image given as a path: it carries the agent, so it boots (on an overlay).
    let vm = common::vm_with(VmConfig {
        kernel_path: Some(data.kernel()),
        rootfs_path: Some(debian_base()),
        ..VmConfig::default()
    });
    assert_eq!(vm.config().image, "custom");
    assert_eq!(vm.run("python3 -c 'print(6*7)'").unwrap().output(), "42");
    drop(vm);

    // An ext4 image without /init.
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hello"), "hi").unwrap();
    let no_init = dir.join("no-init.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .stdout(std::process::Stdio::null())
        .arg(&tree)
        .arg(&no_init)
        .arg("8M")
        .status()
        .unwrap();
    assert!(status.success());
    let err = SmolVm::with_data_dir(
        VmConfig {
            rootfs_path: Some(no_init.clone()),
            ..VmConfig::default()
        },
        data.clone(),
    )
    .err()
    .unwrap();
    assert!(matches!(
        err,
        Error::InvalidConfig {
            field: "rootfs_path",
            ..
        }
    ));
    let message = err.to_string();
    assert!(
        message.contains("no /init") && message.contains("smolvm-agent"),
        "{message}"
    );

    // An ext4 image whose /init is something else.
    std::fs::write(tree.join("init"), "#!/bin/sh\nexec /bin/sh\n").unwrap();
    let other_init = dir.join("other-init.ext4");
    let status = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .stdout(std::process::Stdio::null())
        .arg(&tree)
        .arg(&other_init)
        .arg("8M")
        .status()
        .unwrap();
    assert!(status.success());
    let message = SmolVm::with_data_dir(
        VmConfig {
            rootfs_path: Some(other_init),
            ..VmConfig::default()
        },
        data.clone(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(message.contains("not a static executable"), "{message}");

    // Neither a filesystem nor an archive.
    let junk = dir.join("junk.img");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let message = SmolVm::with_data_dir(
        VmConfig {
            rootfs_path: Some(junk),
            ..VmConfig::default()
        },
        data,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(message.contains("neither an initramfs"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unknown_image_lists_the_available_ones_and_minimal_still_boots() {
    let data = DataDir::from_env();
    let err = SmolVm::with_data_dir(
        VmConfig {
            image: Some("no-such-image".into()),
            ..VmConfig::default()
        },
        data,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("unknown image \"no-such-image\"")
            && err.contains("debian")
            && err.contains("minimal"),
        "{err}"
    );
    let vm = common::vm_with(VmConfig {
        image: Some("minimal".into()),
        ..VmConfig::default()
    });
    assert!(matches!(vm.config().rootfs, RootFs::Initramfs(_)));
    assert_eq!(vm.run("echo fast").unwrap().output(), "fast");
    assert!(!vm.paths().overlay().exists());
}

#[test]
fn a_custom_image_with_one_extra_package_builds_and_boots_and_a_bad_package_keeps_nothing() {
    let data = DataDir::from_env();
    let agent = image::find_agent().expect("the static agent: run scripts/build.sh");
    let name = format!("test-jq-{}", std::process::id());
    let spec = debian::DebianSpec::new(Some(&name), &["jq".to_string()], None).unwrap();
    assert!(debian::build(&data, &spec, &agent, &NoProgress).unwrap());
    // Same inputs: nothing to do.
    assert!(!debian::build(&data, &spec, &agent, &NoProgress).unwrap());
    let meta = image::find_image(&data, &name).unwrap();
    assert_eq!(meta.kind, "ext4");
    assert_eq!(meta.packages, ["python3", "jq"]);
    // A new agent (here: the same program with bytes appended) is swapped in as /init
    // instead of bootstrapping Debian again.
    let dir = scratch("new-agent");
    let mut bytes = std::fs::read(&agent).unwrap();
    bytes.extend_from_slice(&[0u8; 64]);
    let new_agent = dir.join("smolvm-agent");
    std::fs::write(&new_agent, &bytes).unwrap();
    let started = std::time::Instant::now();
    assert!(debian::build(&data, &spec, &new_agent, &NoProgress).unwrap());
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    let base = image::rootfs_of(&data, &name).unwrap();
    assert_eq!(
        image::disk::ext_read_file(&base, "/init").unwrap().unwrap(),
        bytes
    );
    let swapped = image::find_image(&data, &name).unwrap();
    assert_eq!(swapped.tree_hash, meta.tree_hash);
    assert_ne!(swapped.inputs_hash, meta.inputs_hash);
    std::fs::remove_dir_all(&dir).unwrap();
    let vm = common::vm_with(VmConfig {
        image: Some(name.clone()),
        ..VmConfig::default()
    });
    assert_eq!(
        vm.run("echo '{\"answer\": 42}' | jq .answer")
            .unwrap()
            .output(),
        "42"
    );
    assert_eq!(vm.run("python3 -c 'print(6*7)'").unwrap().output(), "42");
    drop(vm);
    image::remove_image(&data, &name).unwrap();
    assert!(!data.image_dir(&name).exists());

    let bad = format!("test-bad-{}", std::process::id());
    let spec =
        debian::DebianSpec::new(Some(&bad), &["no-such-package-smolvm".to_string()], None).unwrap();
    let err = debian::build(&data, &spec, &agent, &NoProgress).unwrap_err();
    assert!(matches!(err, Error::ImageBuild { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("Couldn't find these debs: no-such-package-smolvm"),
        "{message}"
    );
    assert!(
        !data.image_dir(&bad).exists(),
        "a failed build keeps nothing"
    );
    let leftovers: Vec<_> = std::fs::read_dir(data.build_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(&bad))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_build_without_enough_disk_space_fails_before_starting_and_says_how_much() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs needs root");
        return;
    }
    let dir = scratch("nospace");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64m,mode=0700", "tmpfs"])
        .arg(&dir)
        .status()
        .unwrap();
    assert!(mounted.success());
    let agent = image::find_agent().expect("the static agent: run scripts/build.sh");
    let result = debian::build(
        &DataDir::at(&dir),
        &debian::DebianSpec::default_image(),
        &agent,
        &NoProgress,
    );
    let _ = Command::new("umount").arg(&dir).status();
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Err(Error::NoSpace {
            needed_mib,
            available_mib,
            ..
        }) => {
            assert_eq!(needed_mib, debian::BASE_SPACE_MIB);
            assert!(available_mib <= 64);
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
}
