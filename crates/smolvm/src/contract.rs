//! The contract between the SDK and a VM's supervisor, in the VM's directory: the SDK writes
//! `vm.json` ([`LaunchSpec`]) and starts the supervisor, which prints one [`ReadyLine`] on its
//! stdout once the VM answers (or failed to), and writes `exit.json` ([`ExitRecord`]) when the
//! VM ends. Both sides use these types and nothing else of each other.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use smolvm_protocol::AgentInfo;

use crate::config::ValidConfig;

/// Everything the supervisor needs to run a VM, written by the SDK to `vm.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LaunchSpec {
    /// The validated configuration.
    pub config: ValidConfig,
    /// The data directory (for cached host facts).
    pub data_dir: PathBuf,
    /// Remove the VM's directory when it stops, and stop it when the owner goes away.
    pub ephemeral: bool,
    /// Start from this snapshot's memory instead of booting (used once: a later restart of
    /// the same sandbox boots from its disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<PathBuf>,
    /// The guest's `/etc/machine-id` (32 hex digits), kept across restarts of one sandbox.
    #[serde(default)]
    pub machine_id: Option<String>,
}

/// The line the supervisor prints on stdout once the VM answers (or failed to).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReadyLine {
    /// Whether the VM is up.
    pub ok: bool,
    /// Why not, when `ok` is false.
    pub error: Option<String>,
    /// QEMU's pid.
    pub qemu_pid: Option<u32>,
    /// The accelerator used.
    pub accel: Option<String>,
    /// The agent's handshake.
    pub agent: Option<AgentInfo>,
    /// Milliseconds from supervisor start to ready.
    pub boot_ms: Option<u64>,
}

/// Why and when the VM ended, written to `exit.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ExitRecord {
    /// `stopped` (asked to), `crashed` (QEMU died on its own), or `failed` (never came up).
    pub state: String,
    /// Details.
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}
