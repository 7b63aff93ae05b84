//! [`SandboxState`]: where a sandbox is in its life, as the SDK, the registry listing, the
//! CLI and the Python package report it.

use serde::{Deserialize, Serialize};

/// Where a sandbox is in its life.
///
/// One type for every place a state appears: a handle's [`crate::SmolVm::status`], the live
/// listing of [`crate::sandbox::SandboxInfo`], the supervisor's `exit.json`, error messages,
/// and the CLI's `ls`/`info` output. It is written (serde, [`SandboxState::as_str`],
/// `Display`) as its lowercase name — `running`, `paused`... — so files on disk and JSON
/// output read as plain strings; it also compares equal to that name (`state == "running"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    /// Configured, not started.
    Created,
    /// Booted and answering.
    Running,
    /// Booted, with its vCPUs stopped by [`crate::SmolVm::pause`]; memory is kept.
    Paused,
    /// Stopped (asked to); a persistent sandbox can be started again.
    Stopped,
    /// Its QEMU or its supervisor died on its own; `smolvm rm` cleans it up.
    Crashed,
    /// It never came up (the boot failed).
    Failed,
    /// Deleted; nothing of it remains.
    Deleted,
}

impl SandboxState {
    /// Every state, in declaration order.
    pub const ALL: [SandboxState; 7] = [
        SandboxState::Created,
        SandboxState::Running,
        SandboxState::Paused,
        SandboxState::Stopped,
        SandboxState::Crashed,
        SandboxState::Failed,
        SandboxState::Deleted,
    ];

    /// Lowercase name, as written on disk and in JSON (and as the reference API reports
    /// `status`).
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxState::Created => "created",
            SandboxState::Running => "running",
            SandboxState::Paused => "paused",
            SandboxState::Stopped => "stopped",
            SandboxState::Crashed => "crashed",
            SandboxState::Failed => "failed",
            SandboxState::Deleted => "deleted",
        }
    }

    /// Whether the sandbox has a live VM: running, or paused with its memory kept.
    pub fn is_live(self) -> bool {
        matches!(self, SandboxState::Running | SandboxState::Paused)
    }
}

impl std::fmt::Display for SandboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad` honours width and alignment (`{:<9}` in `smolvm ls`).
        f.pad(self.as_str())
    }
}

/// The error of parsing a [`SandboxState`] from a name that is none of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown sandbox state {0:?}")]
pub struct UnknownState(pub String);

impl std::str::FromStr for SandboxState {
    type Err = UnknownState;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SandboxState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

impl PartialEq<str> for SandboxState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SandboxState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_serde_as_their_on_disk_names() {
        let on_disk = [
            (SandboxState::Created, "created"),
            (SandboxState::Running, "running"),
            (SandboxState::Paused, "paused"),
            (SandboxState::Stopped, "stopped"),
            (SandboxState::Crashed, "crashed"),
            (SandboxState::Failed, "failed"),
            (SandboxState::Deleted, "deleted"),
        ];
        assert_eq!(on_disk.len(), SandboxState::ALL.len());
        for (state, name) in on_disk {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<SandboxState>(&json).unwrap(), state);
            assert_eq!(state.as_str(), name);
            assert_eq!(state.to_string(), name);
            assert_eq!(name.parse::<SandboxState>().unwrap(), state);
            assert!(state == name && state == *name);
        }
        assert!("Running".parse::<SandboxState>().is_err());
        assert!(serde_json::from_str::<SandboxState>("\"stopping\"").is_err());
    }

    #[test]
    fn display_pads_like_a_string() {
        assert_eq!(format!("{:<9}|", SandboxState::Paused), "paused   |");
    }

    #[test]
    fn only_running_and_paused_are_live() {
        let live: Vec<_> = SandboxState::ALL
            .into_iter()
            .filter(|s| s.is_live())
            .collect();
        assert_eq!(live, [SandboxState::Running, SandboxState::Paused]);
    }
}
