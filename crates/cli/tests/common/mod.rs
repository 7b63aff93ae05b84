//! Helpers for the CLI tests: they run the real `smolvm` binary, which boots real VMs.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `smolvm` binary under test.
pub fn smolvm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smolvm"))
}

/// Runs `smolvm args...` and collects its output.
pub fn run(args: &[&str]) -> Output {
    smolvm().args(args).output().expect("smolvm runs")
}

/// Runs `smolvm args...` with its own data directory.
pub fn run_in(data: &Path, args: &[&str]) -> Output {
    smolvm()
        .env("SMOLVM_DATA_DIR", data)
        .args(args)
        .output()
        .expect("smolvm runs")
}

/// Lossy text of some output.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that a command succeeded and returns its stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Parses a `--json` envelope.
pub fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out.stdout)))
}

/// A data directory of its own (sharing the built kernel and images), so that every VM in it
/// belongs to this test.
pub fn private_data_dir(name: &str) -> PathBuf {
    let real = smolvm::DataDir::from_env();
    let dir = std::env::temp_dir().join(format!("smolvm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for sub in ["kernel", "images", "host.json"] {
        std::os::unix::fs::symlink(real.root().join(sub), dir.join(sub)).unwrap();
    }
    dir
}

pub fn vm_dirs(data: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(data.join("vms"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

pub fn pid_in(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn alive(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}
