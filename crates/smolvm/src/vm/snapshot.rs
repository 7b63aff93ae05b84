//! Pause, resume, snapshots and restores of a VM.

use std::path::{Path, PathBuf};
use std::time::Duration;

use smolvm_protocol::{Response, SupervisorRequest};

use super::{SandboxState, SmolVm};
use crate::config::ValidConfig;
use crate::dirs::DataDir;
use crate::error::{Error, Resource, Result};
use crate::snapshot::{self, Compat, SnapshotMeta};

/// How long a snapshot may take before the SDK stops waiting (the supervisor carries on and
/// either completes it or leaves nothing).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);

/// How to take a snapshot.
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// The snapshot's id; a new `snap-xxxxxxxx` when absent.
    pub id: Option<String>,
    /// Leave the VM paused afterwards (it resumes by default).
    pub keep_paused: bool,
}

/// How to restore a snapshot.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// The new sandbox's name; a random `vm-xxxxxxxx` when absent.
    pub name: Option<String>,
    /// Make a persistent, named sandbox (as `smolvm create` does) rather than one owned by
    /// the returned handle.
    pub persistent: bool,
}

impl SmolVm {
    /// Stops the guest's vCPUs; its memory, processes and files stay as they are. Commands
    /// and file transfers are refused until [`SmolVm::resume`]. Pausing a paused VM does
    /// nothing.
    pub fn pause(&self) -> Result<()> {
        self.supervisor_call("Cannot pause", &SupervisorRequest::Pause)?;
        self.set_live_state(SandboxState::Paused);
        Ok(())
    }

    /// Restarts a paused guest, its clock stepped to the host's time. Resuming a running VM
    /// does nothing.
    pub fn resume(&self) -> Result<()> {
        self.supervisor_call("Cannot resume", &SupervisorRequest::Resume)?;
        self.set_live_state(SandboxState::Running);
        Ok(())
    }

    /// Saves the VM's memory, device state and disk as a snapshot in the data directory. The
    /// guest is stopped while it is taken and then resumes (unless `keep_paused`), running
    /// processes and all. Any number of new sandboxes can be restored from it.
    pub fn snapshot(&self, options: &SnapshotOptions) -> Result<SnapshotMeta> {
        let id = match &options.id {
            Some(id) => {
                snapshot::validate_snapshot_id(id)?;
                id.clone()
            }
            None => snapshot::new_snapshot_id(),
        };
        let dir = snapshot::snapshot_dir(&self.data, &id);
        if dir.exists() {
            return Err(Error::AlreadyExists {
                what: Resource::Snapshot,
                hint: format!("pick another id or remove it with `smolvm snapshot rm {id}`"),
                name: id,
            });
        }
        let parent = self.data.snapshots_dir();
        smolvm_sys::fs::create_dir_private(&parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        self.snapshot_into(&dir, &id, options, None)
    }

    /// Takes a snapshot into `dir` (which must not exist).
    pub(crate) fn snapshot_into(
        &self,
        dir: &Path,
        id: &str,
        options: &SnapshotOptions,
        template_fingerprint: Option<String>,
    ) -> Result<SnapshotMeta> {
        let mut config = self.config.clone();
        // The guest carries its variables in memory; a restore must not inject old ones.
        config.env_vars.clear();
        let mut meta = SnapshotMeta {
            id: id.to_string(),
            source_vm: self.config.vm_id.clone(),
            image: self.config.image.clone(),
            created_at: smolvm_sys::fs::unix_now(),
            config,
            compat: Compat::current()?,
            template_fingerprint,
            stats: None,
        };
        let request = SupervisorRequest::Snapshot {
            dir: dir.display().to_string(),
            keep_paused: options.keep_paused,
            meta: serde_json::to_value(&meta).expect("serialises"),
        };
        let conn = self.conn_live("Cannot take a snapshot")?;
        match conn.call(&request, Some(SNAPSHOT_TIMEOUT))? {
            Response::Snapshot(stats) => {
                if options.keep_paused {
                    self.set_live_state(SandboxState::Paused);
                }
                meta.stats = Some(stats);
                Ok(meta)
            }
            other => Err(self.unexpected(other)),
        }
    }

    /// Makes a new sandbox from snapshot `snapshot_id` and starts it: the guest carries on
    /// where the snapshot left it (running processes, files, environment variables), as a
    /// distinct machine with its own name, hostname, machine id, random seed and disk, its
    /// clock set to now. The snapshot's source may keep running meanwhile.
    pub fn restore(data: DataDir, snapshot_id: &str, options: &RestoreOptions) -> Result<Self> {
        Self::restore_with(data, snapshot_id, options, None)
    }

    /// Like [`SmolVm::restore`], with the supervisor started by `launcher`.
    pub fn restore_with(
        data: DataDir,
        snapshot_id: &str,
        options: &RestoreOptions,
        launcher: Option<crate::launch::Launcher>,
    ) -> Result<Self> {
        let meta = snapshot::find(&data, snapshot_id)?;
        // Everything read back from the snapshot's directory is checked again.
        meta.config.recheck()?;
        snapshot::check_files(&snapshot::snapshot_dir(&data, snapshot_id))?;
        if let Some(why) = meta.compat.mismatch(&Compat::current()?) {
            return Err(Error::InvalidConfig {
                field: "snapshot_id",
                reason: format!(
                    "snapshot {snapshot_id:?} cannot be restored on this host: {why}; take a new \
                     snapshot with `smolvm snapshot create`"
                ),
            });
        }
        let config = ValidConfig {
            vm_id: match &options.name {
                Some(name) => {
                    crate::names::validate_vm_id(name)?;
                    name.clone()
                }
                None => crate::config::random_vm_id(),
            },
            ..meta.config
        };
        let mut vm = Self::from_valid(config, data, options.persistent, launcher)?;
        vm.restore_from = Some(snapshot::snapshot_dir(&vm.data, snapshot_id));
        vm.start()?;
        Ok(vm)
    }

    /// Where the first start of this VM loads its guest from, if not from a cold boot: the
    /// snapshot given to [`SmolVm::restore`], else the image's template (built if missing or
    /// stale; a template that cannot be built means a cold boot, not a failure).
    pub(crate) fn restore_source(&self, template: bool) -> Option<(PathBuf, bool)> {
        if let Some(dir) = &self.restore_from {
            return Some((dir.clone(), false));
        }
        if self.cold || !template {
            return None;
        }
        match crate::template::ensure(&self.data, &self.config, self.launcher.as_ref()) {
            Ok(dir) => dir.map(|d| (d, true)),
            Err(e) => {
                tracing::warn!(vm = %self.config.vm_id, "no template, booting cold: {e}");
                None
            }
        }
    }

    fn supervisor_call(&self, action: &'static str, request: &SupervisorRequest) -> Result<()> {
        let conn = self.conn_live(action)?;
        match conn.call(request, Some(Duration::from_secs(60)))? {
            Response::Ok => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }
}
