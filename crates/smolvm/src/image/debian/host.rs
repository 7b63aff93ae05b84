//! Host-side helpers of an image build: free space, a lock per image, running the build
//! tools with progress, and removing a build tree safely.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{Error, Result};
use crate::image::Progress;

/// Host disk space a file takes (its allocated blocks; image files are sparse).
pub fn allocated_mib(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512 / (1 << 20))
}

/// Fails before anything is written when the data directory's filesystem lacks the space.
pub(crate) fn check_space(dir: &Path, needed_mib: u64, name: &str) -> Result<()> {
    let available_mib = available_mib(dir)?;
    if available_mib < needed_mib {
        return Err(Error::NoSpace {
            what: format!("image {name}"),
            dir: dir.to_path_buf(),
            needed_mib,
            available_mib,
        });
    }
    Ok(())
}

/// Free space for unprivileged use on the filesystem holding `dir`, in MiB.
pub fn available_mib(dir: &Path) -> Result<u64> {
    let bytes = smolvm_sys::fs::free_space(dir)
        .map_err(|e| Error::io(format!("checking the free space of {}", dir.display()), e))?;
    Ok(bytes / (1 << 20))
}

pub(crate) use smolvm_sys::fs::lock;

/// Unmounts whatever a killed debootstrap left mounted inside `tree`, then deletes `tree`
/// without crossing into other filesystems (debootstrap may bind-mount the host's /dev there).
pub(crate) fn remove_tree(tree: &Path) {
    if !tree.exists() {
        return;
    }
    let prefix = format!("{}/", tree.display());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut inside: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    // Deepest first, so that nested mounts come off before their parents.
    inside.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in inside {
        let _ = smolvm_sys::fs::unmount_detached(Path::new(mount));
    }
    let _ = Command::new("rm")
        .args(["-rf", "--one-file-system"])
        .arg(tree)
        .status();
}

/// Removes build trees of this image left by builds that died (the lock is held, so none of
/// them is in use).
pub(crate) fn remove_stale_trees(scratch: &Path, name: &str) {
    let prefix = format!("image-{name}.");
    for entry in std::fs::read_dir(scratch).into_iter().flatten().flatten() {
        let file_name = entry.file_name();
        let is_stale = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()));
        if is_stale {
            remove_tree(&entry.path());
        }
    }
}

/// Space the files of `tree` take, in MiB (one filesystem only).
pub(crate) fn tree_mib(tree: &Path) -> u64 {
    Command::new("du")
        .args(["-s", "-x", "-m"])
        .arg(tree)
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs a build command, passing its stdout lines to `progress`. On failure returns the last
/// lines of its stderr (where debootstrap and mkfs say what went wrong) and the exit status.
pub(crate) fn run_logged(
    cmd: &mut Command,
    progress: &dyn Progress,
) -> std::result::Result<(), String> {
    let mut child = cmd
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", cmd.get_program().to_string_lossy()))?;
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            text.push_str(&line);
            text.push('\n');
        }
        last_lines(&text, 12)
    });
    // debootstrap reports its errors ("E: Couldn't find these debs: ...") on stdout.
    let mut reported = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(|l| l.ok())
    {
        let line = line.trim();
        if line.starts_with("E: ") {
            reported.push(line.to_string());
        }
        if !line.is_empty() {
            progress.tick(line.strip_prefix("I: ").unwrap_or(line));
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let tail = errors.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let detail = if !reported.is_empty() {
        reported.join("\n")
    } else if !tail.is_empty() {
        tail
    } else {
        "no output".into()
    };
    Err(format!("{detail} ({status})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn space_check_says_how_much_is_needed() {
        let err = check_space(Path::new("/"), u64::MAX / 2, "debian")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("MiB needed") && err.contains("image debian"),
            "{err}"
        );
        assert!(check_space(Path::new("/"), 1, "debian").is_ok());
    }
}
