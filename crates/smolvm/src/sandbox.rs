//! What a sandbox is doing right now, read from its directory and `/proc` only — never from a
//! socket — so that listing sandboxes cannot hang on a dead VM.

use std::time::SystemTime;

use serde::Serialize;

use smolvm_sys::process::{cmdline_contains, pid_alive, read_pid};

use crate::contract::ExitRecord;
use crate::dirs::DataDir;
use crate::error::{Error, Result};
use crate::paths::VmPaths;
use crate::state::SandboxState;
use crate::store::Store;
pub use crate::store::{generate_name, Record};

/// A sandbox with its live state.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    /// The registry entry.
    #[serde(flatten)]
    pub record: Record,
    /// `running`, `paused`, `stopped`, `crashed` or `failed`.
    pub state: SandboxState,
    /// Why it is not running, when known.
    pub reason: Option<String>,
    /// The supervisor's pid while running.
    pub supervisor_pid: Option<u32>,
    /// QEMU's pid while running.
    pub qemu_pid: Option<u32>,
    /// Seconds since it started, while running.
    pub uptime_secs: Option<u64>,
    /// How its QEMU is confined (seccomp, uid, namespaces), while running.
    pub confinement: Option<smolvm_vmm::jail::Report>,
}

/// The live state of `record`.
pub fn inspect(data: &DataDir, record: Record) -> SandboxInfo {
    let paths = VmPaths::new(data.vm_dir(&record.name));
    let mut info = SandboxInfo {
        record,
        state: SandboxState::Stopped,
        reason: None,
        supervisor_pid: None,
        qemu_pid: None,
        uptime_secs: None,
        confinement: None,
    };
    if let Some(pid) = read_pid(&paths.supervisor_pid()) {
        if pid_alive(pid) {
            info.state = if paths.paused_marker().exists() {
                SandboxState::Paused
            } else {
                SandboxState::Running
            };
            info.supervisor_pid = Some(pid);
            info.qemu_pid = read_pid(&paths.qemu_pid()).filter(|p| pid_alive(*p));
            info.confinement = info
                .qemu_pid
                .and_then(|p| smolvm_vmm::jail::inspect(p).ok());
            info.uptime_secs = std::fs::metadata(paths.supervisor_pid())
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| d.as_secs());
            return info;
        }
        info.state = SandboxState::Crashed;
        info.reason = Some(format!(
            "its supervisor (pid {pid}) died; `smolvm rm {}` cleans it up",
            info.record.name
        ));
        return info;
    }
    let exit = std::fs::read(paths.exit_record())
        .ok()
        .and_then(|b| read_exit_record(&b));
    if let Some((state, reason)) = exit {
        info.state = state;
        info.reason = Some(reason);
    } else if !paths.dir().exists() {
        info.state = SandboxState::Crashed;
        info.reason = Some("its files are gone".into());
    }
    info
}

/// The state and reason of the supervisor's `exit.json` (`stopped`, `crashed` or `failed`);
/// `None` when it is malformed. A state this version does not know reads as `crashed`.
fn read_exit_record(bytes: &[u8]) -> Option<(SandboxState, String)> {
    let exit: ExitRecord = serde_json::from_slice(bytes).ok()?;
    let state = exit.state.parse().unwrap_or(SandboxState::Crashed);
    Some((state, exit.reason))
}

/// Every sandbox with its live state. Ephemeral sandboxes whose owner cleaned up are dropped
/// from the registry on the way.
pub fn list(data: &DataDir) -> Result<Vec<SandboxInfo>> {
    let store = Store::open(data)?;
    let mut out = Vec::new();
    for record in store.list()? {
        if !record.persistent && !data.vm_dir(&record.name).exists() {
            store.remove(&record.id)?;
            continue;
        }
        out.push(inspect(data, record));
    }
    Ok(out)
}

/// The sandbox called `name_or_id`, or an error that says how to see the existing ones.
pub fn find(data: &DataDir, name_or_id: &str) -> Result<SandboxInfo> {
    let store = Store::open(data)?;
    match store.find(name_or_id)? {
        Some(record) => Ok(inspect(data, record)),
        None => Err(Error::NotFound {
            what: "sandbox",
            name: name_or_id.to_string(),
            hint: "list sandboxes with `smolvm ls --all`".into(),
        }),
    }
}

/// Removes what is left of a sandbox that is not running: kills stray processes of a crashed
/// one, then deletes its directory and its registry entry.
pub fn purge(data: &DataDir, info: &SandboxInfo) -> Result<()> {
    let paths = VmPaths::new(data.vm_dir(&info.record.name));
    for pid in [
        read_pid(&paths.supervisor_pid()),
        read_pid(&paths.qemu_pid()),
    ]
    .into_iter()
    .flatten()
    {
        // Checked to be this sandbox's process (a pid may have been recycled).
        if pid_alive(pid) && cmdline_contains(pid, &paths.dir().display().to_string()) {
            let _ = smolvm_sys::process::kill(pid, libc::SIGKILL);
        }
    }
    match std::fs::remove_dir_all(paths.dir()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("removing {}", paths.dir().display()), e)),
    }
    Store::open(data)?.remove(&info.record.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_records_read_back_with_their_states() {
        for state in ["stopped", "crashed", "failed"] {
            let written = format!(r#"{{"state":"{state}","reason":"why","at_unix":1}}"#);
            let (read, reason) = read_exit_record(written.as_bytes()).unwrap();
            assert_eq!((read.as_str(), reason.as_str()), (state, "why"));
        }
        let odd = br#"{"state":"melted","reason":"?","at_unix":1}"#;
        assert_eq!(read_exit_record(odd).unwrap().0, SandboxState::Crashed);
        assert!(read_exit_record(b"{").is_none());
    }
}
