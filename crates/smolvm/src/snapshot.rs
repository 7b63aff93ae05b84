//! Snapshots on the host: what one records, where it lives, listing, lookup and removal.
//!
//! A snapshot is a directory (see [`SnapshotPaths`]) that appears complete, by an atomic
//! rename, or not at all. Assembling directories (`.<id>.partial-<pid>`) are invisible here
//! and removed once the supervisor that wrote them is gone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use smolvm_protocol::SnapshotStats;

use crate::config::ValidConfig;
use crate::dirs::DataDir;
use crate::error::{Error, Result};
use crate::paths::SnapshotPaths;

/// What a snapshot records about itself (`snapshot.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The snapshot's id (its directory's name).
    pub id: String,
    /// The sandbox it was taken from.
    pub source_vm: String,
    /// Image name of that sandbox.
    pub image: String,
    /// Seconds since the Unix epoch.
    pub created_at: u64,
    /// The sandbox's configuration when it was taken (a restored sandbox gets the same
    /// machine: memory, vCPUs, boot arguments).
    pub config: ValidConfig,
    /// What a host must match to load it (see [`Compat`]).
    pub compat: Compat,
    /// For a template: the hash of everything it was booted from (kernel, image, agent,
    /// QEMU); a different hash means the template is stale and is rebuilt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_fingerprint: Option<String>,
    /// Sizes and timings measured by the supervisor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<SnapshotStats>,
}

/// What must be the same on the host that loads a snapshot as on the one that took it:
/// QEMU's migration stream is only readable by the same QEMU build, with the same
/// accelerator and CPU model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compat {
    /// `kvm` or `tcg`.
    pub accel: String,
    /// The QEMU binary's path, size and modification time.
    pub qemu: String,
    /// The wire protocol the guest agent speaks.
    pub protocol: u32,
}

impl Compat {
    /// This host, now.
    pub fn current() -> Result<Self> {
        let qemu = smolvm_vmm::qemu::find_qemu()?;
        Ok(Self {
            accel: smolvm_vmm::accel::choose_accel().accel.as_str().to_string(),
            qemu: file_identity(&qemu),
            protocol: smolvm_protocol::PROTOCOL_VERSION,
        })
    }

    /// Why a snapshot taken under `self` cannot be loaded under `host`, if it cannot.
    pub fn mismatch(&self, host: &Compat) -> Option<String> {
        if self.accel != host.accel {
            return Some(format!(
                "it was taken under {} and this host runs VMs under {}",
                self.accel, host.accel
            ));
        }
        if self.qemu != host.qemu {
            return Some(format!(
                "it was taken with another QEMU build ({}; now {})",
                self.qemu, host.qemu
            ));
        }
        if self.protocol != host.protocol {
            return Some(format!(
                "its guest agent speaks protocol {} and this SmolVM speaks {}",
                self.protocol, host.protocol
            ));
        }
        None
    }
}

/// A file's path, size and modification time: changes whenever the file is rebuilt or
/// replaced, at the cost of one `stat`.
pub fn file_identity(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => format!(
            "{} size={} mtime={}.{:09} ino={}",
            path.display(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ino()
        ),
        Err(_) => format!("{} (missing)", path.display()),
    }
}

/// Checks that `id` can name a snapshot (the rules of sandbox names).
pub fn validate_snapshot_id(id: &str) -> Result<()> {
    crate::names::validate_vm_id(id).map_err(|_| Error::InvalidConfig {
        field: "snapshot_id",
        reason: format!(
            "{id:?} is not a valid snapshot id: use 1-63 characters of lowercase letters, \
             digits and '-', starting with a letter or digit"
        ),
    })
}

/// A new snapshot id: `snap-` and eight hex digits.
pub fn new_snapshot_id() -> String {
    format!("snap-{}", smolvm_sys::random::random_hex(4))
}

/// Checks that the files a restore reads from snapshot (or template) directory `dir` are
/// regular files of its own: no symlink (that could point anywhere on the host), no device or
/// FIFO, nothing owned by another user.
pub fn check_files(dir: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let files = SnapshotPaths::new(dir);
    let me = smolvm_sys::process::euid();
    for path in [
        files.meta(),
        files.memory(),
        files.memory_raw(),
        files.memory_raw_check(),
        files.kernel(),
        files.initrd(),
        files.overlay(),
        files.base(),
    ] {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("checking {}", path.display()), e)),
        };
        let problem = if !meta.file_type().is_file() {
            Some("is not a regular file")
        } else if meta.uid() != me && me != 0 {
            Some("belongs to another user")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(Error::InvalidConfig {
                field: "snapshot",
                reason: format!(
                    "{} {problem}; refusing to restore from {} (remove it with `smolvm snapshot rm`)",
                    path.display(),
                    dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// The directory of snapshot `id`.
pub fn snapshot_dir(data: &DataDir, id: &str) -> PathBuf {
    data.snapshots_dir().join(id)
}

/// Reads the snapshot in `dir`, if it is one.
pub fn read_meta(dir: &Path) -> Option<SnapshotMeta> {
    let bytes = std::fs::read(SnapshotPaths::new(dir).meta()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Every snapshot, oldest first. Leftovers of snapshots whose supervisor died are removed.
pub fn list(data: &DataDir) -> Vec<SnapshotMeta> {
    let mut out = list_in(&data.snapshots_dir());
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    out
}

/// The snapshots in `parent` (also used for templates).
pub(crate) fn list_in(parent: &Path) -> Vec<SnapshotMeta> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            remove_if_abandoned(&entry.path(), &name);
            continue;
        }
        if let Some(meta) = read_meta(&entry.path()) {
            out.push(meta);
        }
    }
    out
}

/// Removes a partial snapshot directory whose writer (the pid in its name) is gone.
fn remove_if_abandoned(path: &Path, name: &str) {
    let pid = name
        .rsplit_once(".partial-")
        .and_then(|(_, pid)| pid.parse::<u32>().ok());
    if let Some(pid) = pid {
        if !smolvm_sys::process::pid_alive(pid) {
            tracing::info!("removing abandoned partial snapshot {}", path.display());
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// The snapshot called `id`, or an error listing those that exist.
pub fn find(data: &DataDir, id: &str) -> Result<SnapshotMeta> {
    if validate_snapshot_id(id).is_ok() {
        if let Some(meta) = read_meta(&snapshot_dir(data, id)) {
            return Ok(meta);
        }
    }
    let known: Vec<String> = list(data).into_iter().map(|m| m.id).collect();
    Err(Error::NotFound {
        what: "snapshot",
        name: id.to_string(),
        hint: if known.is_empty() {
            "there are no snapshots; take one with `smolvm snapshot create SANDBOX`".into()
        } else {
            format!("snapshots: {}", known.join(", "))
        },
    })
}

/// Removes snapshot `id` and returns what it was. Sandboxes restored from it are unaffected
/// (they hold their own links to its files).
pub fn remove(data: &DataDir, id: &str) -> Result<SnapshotMeta> {
    let meta = find(data, id)?;
    let dir = snapshot_dir(data, id);
    // Renamed away first, so that the snapshot disappears at once and whole.
    let doomed = data.snapshots_dir().join(format!(
        ".{id}.removing-{}",
        smolvm_sys::random::random_hex(4)
    ));
    std::fs::rename(&dir, &doomed)
        .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
    std::fs::remove_dir_all(&doomed)
        .map_err(|e| Error::io(format!("removing {}", doomed.display()), e))?;
    Ok(meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compat() -> Compat {
        Compat {
            accel: "tcg".into(),
            qemu: "/usr/bin/qemu size=1".into(),
            protocol: 1,
        }
    }

    #[test]
    fn a_different_host_is_named_in_the_mismatch() {
        assert_eq!(compat().mismatch(&compat()), None);
        let kvm = Compat {
            accel: "kvm".into(),
            ..compat()
        };
        assert!(compat().mismatch(&kvm).unwrap().contains("under tcg"));
        let qemu = Compat {
            qemu: "/usr/bin/qemu size=2".into(),
            ..compat()
        };
        assert!(compat().mismatch(&qemu).unwrap().contains("QEMU build"));
    }

    #[test]
    fn snapshot_ids_follow_the_sandbox_name_rules() {
        assert!(validate_snapshot_id("snap-1").is_ok());
        assert!(validate_snapshot_id(&new_snapshot_id()).is_ok());
        let err = validate_snapshot_id("../x").unwrap_err().to_string();
        assert!(err.contains("snapshot_id"), "{err}");
    }

    #[test]
    fn the_supervisor_names_partial_directories_the_way_listing_expects() {
        let dest = Path::new("/data/snapshots/snap-1");
        let partial = crate::supervisor::snapshot::partial_dir(dest);
        assert_eq!(partial.parent(), dest.parent());
        let name = partial.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with('.'), "{name}");
        let pid = name.rsplit_once(".partial-").unwrap().1;
        assert_eq!(pid, std::process::id().to_string());
    }

    #[test]
    fn partial_directories_are_invisible_and_removed_once_abandoned() {
        let parent = std::env::temp_dir().join(format!("smolvm-snaps-{}", std::process::id()));
        let live = parent.join(format!(".a.partial-{}", std::process::id()));
        // pid 0 is never a live process's pid.
        let dead = parent.join(".b.partial-0");
        std::fs::create_dir_all(&live).unwrap();
        std::fs::create_dir_all(&dead).unwrap();
        assert!(list_in(&parent).is_empty());
        assert!(live.exists() && !dead.exists());
        std::fs::remove_dir_all(&parent).unwrap();
    }
}
