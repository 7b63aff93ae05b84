//! Crafted listings a real guest agent would not send, but a hostile one can.

use super::*;

fn file(path: &str, mode: u32, size: u64) -> TreeEntry {
    TreeEntry {
        path: path.into(),
        kind: FileKind::File,
        mode,
        size,
        target: None,
    }
}

fn dir(path: &str) -> TreeEntry {
    TreeEntry {
        path: path.into(),
        kind: FileKind::Dir,
        mode: 0o755,
        size: 0,
        target: None,
    }
}

fn link(path: &str, target: &str) -> TreeEntry {
    TreeEntry {
        path: path.into(),
        kind: FileKind::Symlink,
        mode: 0o777,
        size: 0,
        target: Some(target.into()),
    }
}

const LIMITS: Limits = Limits {
    max_entries: 1000,
    max_bytes: 1 << 30,
    keep_special_bits: false,
};

fn refused(entries: &[TreeEntry]) -> Refusal {
    plan(entries, &LIMITS).expect_err("the listing must be refused")
}

/// The issue's chain: `d/l -> ..`, `u1 -> d/l/..`, `u2 -> u1/..` ... `u16 -> u15/..`,
/// `etc -> u16/etc`, which resolved to the host's `/etc` when each link was checked alone.
fn the_issue_chain() -> Vec<TreeEntry> {
    let mut entries = vec![dir("d"), link("d/l", ".."), link("u1", "d/l/..")];
    for i in 2..=16 {
        entries.push(link(&format!("u{i}"), &format!("u{}/..", i - 1)));
    }
    entries.push(link("etc", "u16/etc"));
    entries
}

#[test]
fn the_symlink_chain_of_the_issue_is_refused_at_its_first_escaping_link() {
    let refusal = refused(&the_issue_chain());
    assert_eq!(refusal.rule, TransferRule::UnsafeTree);
    assert_eq!(refusal.entry, "u1");
    assert!(
        refusal.reason.contains("leads outside the tree"),
        "{refusal:?}"
    );
    // Each link alone looked harmless: `d/l -> ..` is the root, which is fine on its own.
    assert!(plan(&[dir("d"), link("d/l", "..")], &LIMITS).is_ok());
    // Any order of the same entries is refused too.
    let mut reversed = the_issue_chain();
    reversed.reverse();
    assert_eq!(refused(&reversed).rule, TransferRule::UnsafeTree);
}

#[test]
fn paths_must_be_plain_relative_and_listed_once() {
    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "./x",
        "a/.",
        "a//b",
        "x/",
        "n\0ul",
    ] {
        let entries = [dir("a"), file(bad, 0o644, 0)];
        assert_eq!(refused(&entries).entry, bad, "{bad:?}");
    }
    let long = "n".repeat(256);
    assert!(refused(&[file(&long, 0o644, 0)]).reason.contains("255"));
    // A path listed twice, whatever the kinds: e.g. a directory entry at a symlink's path,
    // which used to make the host chmod through the link.
    let twice = refused(&[link("l", "x"), dir("l")]);
    assert_eq!(
        (twice.entry.as_str(), twice.reason.as_str()),
        ("l", "listed twice")
    );
    assert_eq!(
        refused(&[file("f", 0o644, 1), file("f", 0o644, 1)]).entry,
        "f"
    );
}

#[test]
fn parents_must_be_listed_directories_never_symlinks_or_files() {
    // Writing `l/x` where `l` is a symlink would write through it.
    let through_link = refused(&[link("l", "."), file("l/x", 0o644, 1)]);
    assert_eq!(through_link.entry, "l/x");
    assert!(
        through_link.reason.contains("not a directory"),
        "{through_link:?}"
    );
    assert_eq!(
        refused(&[file("f", 0o644, 0), file("f/x", 0o644, 0)]).entry,
        "f/x"
    );
    assert_eq!(refused(&[file("missing/x", 0o644, 0)]).entry, "missing/x");
    // Children listed before their parents are fine: directories are made by depth.
    let out = plan(&[file("a/b/f", 0o644, 3), dir("a/b"), dir("a")], &LIMITS).unwrap();
    let dirs: Vec<_> = out.dirs.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(dirs, ["a", "a/b"]);
    assert_eq!(out.total_bytes, 3);
}

#[test]
fn kinds_and_targets_must_agree() {
    let mut no_target = link("l", "x");
    no_target.target = None;
    assert!(refused(&[no_target]).reason.contains("without a target"));
    let mut file_with_target = file("f", 0o644, 0);
    file_with_target.target = Some("x".into());
    assert!(refused(&[file_with_target])
        .reason
        .contains("not a symlink"));
    let other = TreeEntry {
        kind: FileKind::Other,
        ..file("fifo", 0o644, 0)
    };
    assert_eq!(plan(&[other], &LIMITS).unwrap().skipped, 1);
}

#[test]
fn symlink_targets_are_resolved_against_the_listing() {
    for (entries, bad) in [
        (vec![link("l", "/etc")], "l"),
        (vec![link("l", "")], "l"),
        (vec![dir("a"), link("a/l", "../../x")], "a/l"),
        // Through another link of the listing.
        (vec![link("up", ".."), link("l", "up/x")], "up"),
        (
            vec![dir("a"), link("a/up", ".."), link("l", "a/up/../x")],
            "l",
        ),
        (
            vec![dir("a"), link("a/abs", "/"), link("l", "a/abs/etc")],
            "a/abs",
        ),
        // A missing component does not stop the walk: `..` is still counted, and links
        // met after it are still followed.
        (vec![link("l", "missing/../../x")], "l"),
        (
            vec![
                dir("d"),
                link("d/up", ".."),
                link("l", "d/missing/../up/.."),
            ],
            "l",
        ),
        // A loop (or a chain longer than the kernel follows).
        (vec![link("a", "b"), link("b", "a"), link("l", "a/x")], "a"),
    ] {
        assert_eq!(refused(&entries).entry, bad, "{entries:?}");
    }
    for ok in [
        vec![dir("a"), file("a/f", 0o644, 1), link("l", "a/f")],
        vec![dir("a"), link("a/l", "../a/./f")],
        vec![dir("a"), dir("a/b"), link("a/b/l", "../../a")],
        vec![link("dangling", "nowhere/at/all")],
        vec![dir("a"), link("a/up", ".."), link("l", "a/up/a")],
    ] {
        assert!(plan(&ok, &LIMITS).is_ok(), "{ok:?}");
    }
}

#[test]
fn special_bits_are_dropped_unless_asked_for() {
    let entries = [
        file("suid", 0o6755, 1),
        TreeEntry {
            mode: 0o1777,
            ..dir("tmp")
        },
    ];
    let out = plan(&entries, &LIMITS).unwrap();
    assert_eq!(out.files[0].mode, 0o755);
    assert_eq!(out.dirs[0].mode, 0o777);
    let keep = Limits {
        keep_special_bits: true,
        ..LIMITS
    };
    let out = plan(&entries, &keep).unwrap();
    assert_eq!((out.files[0].mode, out.dirs[0].mode), (0o6755, 0o1777));
    // Bits above the permission bits never pass.
    assert_eq!(local_mode(0o170_755, true), 0o755);
}

#[test]
fn entry_count_and_total_size_are_capped() {
    let many: Vec<_> = (0..1001)
        .map(|i| file(&format!("f{i}"), 0o644, 0))
        .collect();
    assert_eq!(refused(&many).rule, TransferRule::TooLarge);
    let huge = [file("a", 0o644, 1 << 40)];
    let refusal = refused(&huge);
    assert_eq!(refusal.rule, TransferRule::TooLarge);
    assert!(refusal.reason.contains("1099511627776"), "{refusal:?}");
    // Sizes that would overflow a u64 saturate instead of wrapping below the cap.
    let overflow = [file("a", 0o644, u64::MAX), file("b", 0o644, 2)];
    assert_eq!(refused(&overflow).rule, TransferRule::TooLarge);
}

#[test]
fn resolving_has_a_budget() {
    let mut budget = 10;
    let err = check_link("", "a/b/c/d/e/f/g/h/i/j/k", &mut budget, |_| Node::Dir).unwrap_err();
    assert!(err.contains("too many or too long"), "{err}");
}
