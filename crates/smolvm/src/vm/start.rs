//! Starting a VM, as named steps: **plan** (a restart of a stopped persistent sandbox, a
//! snapshot to restore, the image's pre-booted template — built first when missing — or a
//! cold boot) → **launch** (the VM's files and `vm.json`, then its supervisor, which boots or
//! restores the machine, hands the guest its identity and puts the configured environment in
//! place before it reports ready) → **connect** (the handle's own connection).
//!
//! None of it holds the handle's state lock: while a start is under way, other threads see
//! the VM as not yet running (and `stop` waits for the start to finish).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Running, SmolVm, SupervisorProcess};
use crate::client::Connection;
use crate::config::ValidConfig;
use crate::contract::LaunchSpec;
use crate::error::{Error, Result};
use crate::launch::{self, Launcher};
use crate::state::SandboxState;
use crate::store::{Record, Store};

/// Where a start begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    /// A stopped persistent sandbox boots again from its own disk, as the same machine.
    Restart,
    /// A snapshot's memory and disk ([`SmolVm::restore`]).
    Snapshot(PathBuf),
    /// The image's pre-booted template.
    Template(PathBuf),
    /// A fresh boot.
    Cold,
}

/// What the launch step starts.
struct Plan {
    source: Source,
    /// The configuration the supervisor gets (a template's or a restart's adjustments made).
    config: ValidConfig,
    /// The guest's machine id (kept across restarts of one sandbox).
    machine_id: Option<String>,
}

impl SmolVm {
    /// Boots the VM; returns once the guest answers and the configured environment variables
    /// are in place. Starting a running VM does nothing.
    pub fn start(&self) -> Result<()> {
        let _one_start = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        let state = self.lock().state;
        match state {
            SandboxState::Running | SandboxState::Paused => return Ok(()),
            SandboxState::Deleted => {
                return Err(self.not_running("Cannot start", SandboxState::Deleted))
            }
            SandboxState::Created
            | SandboxState::Stopped
            | SandboxState::Crashed
            | SandboxState::Failed => {}
        }
        let restart =
            self.persistent && state == SandboxState::Stopped && self.paths.spec().is_file();
        if restart {
            self.check_previous_supervisor_gone()?;
        } else {
            self.register()?;
        }
        let running = match self.plan_and_launch(restart) {
            Ok(running) => running,
            Err(e) => {
                if !restart {
                    self.unregister();
                }
                return Err(e);
            }
        };
        let mut inner = self.lock();
        inner.running = Some(running);
        inner.state = SandboxState::Running;
        Ok(())
    }

    /// Plans and launches; a template that cannot be started from is discarded (the next
    /// start rebuilds it) and the VM boots cold instead, so that it never makes the sandbox
    /// unusable.
    fn plan_and_launch(&self, restart: bool) -> Result<Running> {
        let plan = self.plan(restart, true)?;
        let template = match &plan.source {
            Source::Template(dir) => Some(dir.clone()),
            _ => None,
        };
        match (self.launch(plan), template) {
            (Ok(running), _) => Ok(running),
            (Err(e), Some(template)) => {
                tracing::warn!(vm = %self.config.vm_id, "starting from {} failed, booting cold: {e}", template.display());
                let _ = std::fs::remove_dir_all(&template);
                self.unregister();
                self.register()?;
                self.launch(self.plan(restart, false)?)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// Step 1: where to start from, and the configuration to start with.
    fn plan(&self, restart: bool, allow_template: bool) -> Result<Plan> {
        let mut config = self.config.clone();
        if restart {
            // The same machine as before: keep its machine id.
            let machine_id = std::fs::read(self.paths.spec())
                .ok()
                .and_then(|b| serde_json::from_slice::<LaunchSpec>(&b).ok())
                .and_then(|spec| spec.machine_id);
            let _ = std::fs::remove_file(self.paths.exit_record());
            // Variables saved at the last stop are the current truth for a RAM-backed guest.
            let saved = std::fs::read(self.paths.saved_env())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(saved) = saved {
                config.env_vars = saved;
            }
            return Ok(Plan {
                source: Source::Restart,
                config,
                machine_id,
            });
        }
        let source = match self.restore_source(allow_template) {
            Some((dir, false)) => Source::Snapshot(dir),
            Some((dir, true)) => Source::Template(dir),
            None => Source::Cold,
        };
        let source = match source {
            Source::Snapshot(dir) => {
                crate::template::prepare_vm_dir(&self.paths, &dir, &mut config, false)?;
                Source::Snapshot(dir)
            }
            Source::Template(dir) => {
                match crate::template::prepare_vm_dir(&self.paths, &dir, &mut config, true) {
                    Ok(()) => Source::Template(dir),
                    // A damaged template is discarded (the next start rebuilds it): boot cold.
                    Err(e) => {
                        tracing::warn!(vm = %config.vm_id, "discarding template {}: {e}", dir.display());
                        let _ = std::fs::remove_dir_all(&dir);
                        config = self.config.clone();
                        Source::Cold
                    }
                }
            }
            other => other,
        };
        tracing::debug!(vm = %config.vm_id, ?source, "planned");
        Ok(Plan {
            source,
            config,
            machine_id: None,
        })
    }

    /// Steps 2 and 3: the VM's disk and `vm.json`, its supervisor (which boots, hands over
    /// the identity and the environment, and reports ready), then the handle's connection.
    fn launch(&self, plan: Plan) -> Result<Running> {
        if let crate::image::RootFs::Disk(base) = &plan.config.rootfs {
            // The VM's writable disk, in its directory: deleted with an ephemeral VM, kept by
            // a persistent one across stop/start (so are its files).
            crate::image::disk::create_overlay(&self.paths, base)?;
        }
        let restore_from = match plan.source {
            Source::Snapshot(dir) | Source::Template(dir) => Some(dir),
            Source::Restart | Source::Cold => None,
        };
        let spec = LaunchSpec {
            config: plan.config,
            data_dir: self.data.root().to_path_buf(),
            ephemeral: !self.persistent,
            restore_from,
            machine_id: Some(
                plan.machine_id
                    .unwrap_or_else(|| smolvm_sys::random::random_hex(16)),
            ),
        };
        smolvm_sys::fs::write_atomic(
            &self.paths.spec(),
            &serde_json::to_vec_pretty(&spec).expect("serialises"),
        )
        .map_err(|e| Error::io("writing vm.json", e))?;
        let launcher = match &self.launcher {
            Some(launcher) => launcher.clone(),
            None => Launcher::find()?,
        };
        tracing::debug!(vm = %self.config.vm_id, "starting the supervisor");
        let started = launch::start(&launcher, &self.paths, &self.config.vm_id, !self.persistent)?;
        let conn = match Connection::connect(&self.paths.api_socket(), &self.config.vm_id) {
            Ok(conn) => conn,
            Err(e) => {
                let mut child = started.child;
                drop(started.owner_pipe);
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        tracing::info!(vm = %self.config.vm_id, boot_ms = ?started.ready.boot_ms, "VM running");
        Ok(Running {
            conn,
            supervisor: SupervisorProcess::Child {
                child: started.child,
                owner_pipe: started.owner_pipe,
            },
        })
    }

    /// The snapshot or template directory the VM's last start restored (as its `vm.json`
    /// records it); `None` after a boot from scratch or from its own disk.
    pub fn restored_from(&self) -> Option<PathBuf> {
        std::fs::read(self.paths.spec())
            .ok()
            .and_then(|b| serde_json::from_slice::<LaunchSpec>(&b).ok())
            .and_then(|spec| spec.restore_from)
    }

    /// Two supervisors on one disk would corrupt it: a restart waits for the last one to be
    /// gone.
    fn check_previous_supervisor_gone(&self) -> Result<()> {
        match smolvm_sys::process::read_pid(&self.paths.supervisor_pid())
            .filter(|p| smolvm_sys::process::pid_alive(*p))
        {
            Some(pid) => Err(Error::StartFailed {
                vm_id: self.config.vm_id.clone(),
                reason: format!(
                    "its previous supervisor (pid {pid}) is still running; try again in a moment"
                ),
            }),
            None => Ok(()),
        }
    }

    /// Claims the name in the registry and creates the VM's directory.
    fn register(&self) -> Result<()> {
        let record = Record {
            id: format!("vm-{:08x}", smolvm_sys::random::random_u64() as u32),
            name: self.config.vm_id.clone(),
            image: self.config.image.clone(),
            memory_mib: self.config.mem_size_mib,
            cpus: self.config.vcpu_count,
            persistent: self.persistent,
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        Store::open(&self.data)?.insert(&record)?;
        let dir = self.paths.dir();
        // The name was free in the registry, so anything left here is debris of a crash.
        let _ = std::fs::remove_dir_all(dir);
        if let Err(e) = smolvm_sys::fs::create_dir_private(dir) {
            self.unregister();
            return Err(Error::io(format!("creating {}", dir.display()), e));
        }
        Ok(())
    }

    /// Undoes [`SmolVm::register`].
    fn unregister(&self) {
        let _ = std::fs::remove_dir_all(self.paths.dir());
        if let Ok(store) = Store::open(&self.data) {
            let _ = store.remove(&self.config.vm_id);
        }
    }
}
