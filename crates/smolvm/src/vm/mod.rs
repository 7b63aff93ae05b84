//! The VM handle: start, stop, delete (commands and environment variables in `commands`,
//! pause and snapshots in `snapshot`).

mod commands;
mod snapshot;
mod start;

pub(crate) use commands::{exec_request, validate_run};

pub use snapshot::{RestoreOptions, SnapshotOptions};

use std::path::PathBuf;
use std::process::{Child, ChildStdin};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use smolvm_protocol::{Response, SupervisorRequest};

use crate::client::Connection;
use crate::config::{ValidConfig, VmConfig};
use crate::contract::LaunchSpec;
use crate::dirs::DataDir;
use crate::error::{Error, Result};
use crate::launch::Launcher;
use crate::paths::VmPaths;
use crate::state::SandboxState;
use crate::store::Store;

/// How long `stop()` waits for a clean guest shutdown before QEMU is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often a command with a cancel token checks it.
pub(crate) const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Extra host-side wait beyond a command's own timeout, for the guest to report it.
pub(crate) const TIMEOUT_SLACK: Duration = Duration::from_secs(30);

/// Where a VM is in its life: the older name of [`SandboxState`], kept so that existing
/// code compiles. A handle reports `Created`, `Running`, `Paused`, `Stopped` or `Deleted`.
pub type VmState = SandboxState;

/// The supervisor process of a running VM.
enum SupervisorProcess {
    /// Started by this handle and reaped here. Dropping `owner_pipe` tells an ephemeral VM's
    /// supervisor that its owner is gone.
    Child {
        child: Child,
        owner_pipe: Option<ChildStdin>,
    },
    /// Started by another process (a handle from [`SmolVm::attach`]).
    Detached(u32),
}

struct Running {
    conn: Arc<Connection>,
    supervisor: SupervisorProcess,
}

struct Inner {
    state: SandboxState,
    running: Option<Running>,
}

/// A sandbox VM.
///
/// A VM made with [`SmolVm::new`] is ephemeral and owned by its handle: dropping the handle
/// (or the owning process dying) stops and deletes it. One made with
/// [`SmolVm::new_persistent`], or reached with [`SmolVm::attach`], lives on its own until
/// `stop`/`delete` and keeps its environment variables across stop/start.
///
/// All methods take `&self`, so one VM can be shared between threads (`Arc<SmolVm>`) and
/// serve several commands at once.
pub struct SmolVm {
    config: ValidConfig,
    data: DataDir,
    paths: VmPaths,
    /// How to start the supervisor; found on first start unless set.
    launcher: Option<Launcher>,
    persistent: bool,
    /// Stop and delete the VM when the handle is dropped.
    owned: bool,
    /// Never start from a pre-booted template (see [`SmolVm::set_cold`]).
    cold: bool,
    /// The snapshot the first start restores (see [`SmolVm::restore`]).
    restore_from: Option<PathBuf>,
    /// Held by [`SmolVm::start`] for a whole start, and by `stop`, so that the two never
    /// interleave; `inner` is held only for moments, never across a boot.
    starting: Mutex<()>,
    inner: Mutex<Inner>,
}

impl SmolVm {
    /// Validates `config` (nothing is created yet). Errors name the field that is wrong.
    pub fn new(config: VmConfig) -> Result<Self> {
        Self::with_data_dir(config, DataDir::from_env())
    }

    /// Like [`SmolVm::new`], with an explicit data directory.
    pub fn with_data_dir(config: VmConfig, data: DataDir) -> Result<Self> {
        Self::build(config, data, false)
    }

    /// A persistent, named sandbox (not started yet): it outlives this handle and this
    /// process, until [`SmolVm::delete`]. Its name is `config.vm_id`.
    pub fn new_persistent(config: VmConfig, data: DataDir) -> Result<Self> {
        Self::build(config, data, true)
    }

    fn build(config: VmConfig, data: DataDir, persistent: bool) -> Result<Self> {
        let config = config.validate(&data)?;
        Self::from_valid(config, data, persistent, None)
    }

    /// Like [`SmolVm::with_data_dir`] ([`SmolVm::new_persistent`] when `persistent`), started
    /// by `launcher`, whose supervisor chooses the VMM: QEMU is not looked for here.
    pub fn with_launcher(
        config: VmConfig,
        data: DataDir,
        persistent: bool,
        launcher: Launcher,
    ) -> Result<Self> {
        let config = config.validate(&data)?;
        Self::from_valid(config, data, persistent, Some(launcher))
    }

    fn from_valid(
        config: ValidConfig,
        data: DataDir,
        persistent: bool,
        launcher: Option<Launcher>,
    ) -> Result<Self> {
        if launcher.is_none() {
            // Fail here, with the install hint, rather than inside the supervisor.
            smolvm_vmm::qemu::find_qemu()?;
        }
        let paths = VmPaths::new(data.vm_dir(&config.vm_id));
        paths.check_socket_len().map_err(|e| Error::InvalidConfig {
            field: "SMOLVM_DATA_DIR",
            reason: e.to_string(),
        })?;
        Ok(Self {
            config,
            data,
            paths,
            launcher,
            persistent,
            owned: !persistent,
            cold: cold_from_env(),
            restore_from: None,
            starting: Mutex::new(()),
            inner: Mutex::new(Inner {
                state: SandboxState::Created,
                running: None,
            }),
        })
    }

    /// Connects to an existing sandbox by name or id, from any process. The handle does not
    /// own the sandbox: dropping it leaves the sandbox as it is.
    pub fn attach(name_or_id: &str) -> Result<Self> {
        Self::attach_in(DataDir::from_env(), name_or_id)
    }

    /// Like [`SmolVm::attach`], with an explicit data directory.
    pub fn attach_in(data: DataDir, name_or_id: &str) -> Result<Self> {
        let info = crate::sandbox::find(&data, name_or_id)?;
        let paths = VmPaths::new(data.vm_dir(&info.record.name));
        let spec: LaunchSpec = std::fs::read(paths.spec())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| Error::NotFound {
                what: "sandbox configuration",
                name: info.record.name.clone(),
                hint: format!(
                    "its files are gone; remove it with `smolvm rm {}`",
                    info.record.name
                ),
            })?;
        let vm = Self {
            config: spec.config,
            data,
            paths,
            launcher: None,
            persistent: info.record.persistent,
            owned: false,
            cold: false,
            restore_from: None,
            starting: Mutex::new(()),
            inner: Mutex::new(Inner {
                state: SandboxState::Stopped,
                running: None,
            }),
        };
        if let Some(pid) = info.supervisor_pid.filter(|_| info.state.is_live()) {
            // A supervisor whose VM has just ended refuses the handshake: the sandbox is then
            // simply not running (and `start()` boots it again).
            if let Ok(conn) = Connection::connect(&vm.paths.api_socket(), &vm.config.vm_id) {
                let mut inner = vm.lock();
                inner.running = Some(Running {
                    conn,
                    supervisor: SupervisorProcess::Detached(pid),
                });
                inner.state = info.state;
            }
        }
        Ok(vm)
    }

    /// Whether the sandbox outlives its handle.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Validates `config` and starts the VM.
    pub fn create(config: VmConfig) -> Result<Self> {
        let vm = Self::new(config)?;
        vm.start()?;
        Ok(vm)
    }

    /// Whether to boot from scratch even when a pre-booted template of the image exists
    /// (`--cold`). Starting from a template gives the same guest, sooner.
    pub fn set_cold(&mut self, cold: bool) {
        self.cold = cold;
    }

    /// Uses `launcher` to start the supervisor (the Python package runs it through its own
    /// interpreter).
    pub fn set_launcher(&mut self, launcher: Launcher) {
        self.launcher = Some(launcher);
    }

    /// The VM's id.
    pub fn vm_id(&self) -> &str {
        &self.config.vm_id
    }

    /// The validated configuration.
    pub fn config(&self) -> &ValidConfig {
        &self.config
    }

    /// The VM's files (console log, supervisor log...).
    pub fn paths(&self) -> &VmPaths {
        &self.paths
    }

    /// The current state.
    pub fn status(&self) -> SandboxState {
        self.lock().state
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn not_running(&self, action: &'static str, state: SandboxState) -> Error {
        Error::VmNotRunning {
            action,
            vm_id: self.config.vm_id.clone(),
            state,
        }
    }

    /// The connection, or the error naming the state for `action`.
    pub(crate) fn conn(&self, action: &'static str) -> Result<Arc<Connection>> {
        let inner = self.lock();
        match &inner.running {
            Some(running) if inner.state == SandboxState::Running => Ok(Arc::clone(&running.conn)),
            _ => Err(self.not_running(action, inner.state)),
        }
    }

    /// The connection of a running or paused VM (for what the supervisor does itself).
    pub(crate) fn conn_live(&self, action: &'static str) -> Result<Arc<Connection>> {
        let inner = self.lock();
        match &inner.running {
            Some(running) if inner.state.is_live() => Ok(Arc::clone(&running.conn)),
            _ => Err(self.not_running(action, inner.state)),
        }
    }

    /// Records a state change made through the supervisor (pause, resume).
    pub(crate) fn set_live_state(&self, state: SandboxState) {
        let mut inner = self.lock();
        if inner.running.is_some() {
            inner.state = state;
        }
    }

    /// Measures `rounds` bare echo round trips on the guest channel, timed by the supervisor
    /// (the channel floor), in nanoseconds.
    pub fn channel_bench(&self, rounds: u32, size: u32) -> Result<Vec<u64>> {
        let conn = self.conn("Cannot benchmark")?;
        match conn.call(
            &SupervisorRequest::ChannelBench { rounds, size },
            Some(Duration::from_secs(120)),
        )? {
            Response::ChannelBench { round_trips_ns } => Ok(round_trips_ns),
            other => Err(self.unexpected(other)),
        }
    }

    /// The pids of the VM's host processes (supervisor, QEMU), for resource measurements.
    pub fn host_pids(&self) -> Result<(u32, u32)> {
        let conn = self.conn_live("Cannot query")?;
        match conn.call(&SupervisorRequest::Status, Some(Duration::from_secs(10)))? {
            Response::Status(status) => Ok((status.supervisor_pid, status.qemu_pid)),
            other => Err(self.unexpected(other)),
        }
    }

    /// Stops the VM: a clean guest shutdown, forced after [`STOP_GRACE`]. Stopping a VM that
    /// is not running does nothing.
    pub fn stop(&self) -> Result<()> {
        // A start under way finishes first (then this stops what it started).
        let _no_start = self.starting.lock().unwrap_or_else(|e| e.into_inner());
        let running = {
            let mut inner = self.lock();
            if !inner.state.is_live() {
                return Ok(());
            }
            inner.state = SandboxState::Stopped;
            inner.running.take()
        };
        let Some(running) = running else {
            return Ok(());
        };
        let stop = SupervisorRequest::Stop {
            grace_ms: STOP_GRACE.as_millis() as u64,
        };
        let _ = running.conn.call(&stop, Some(Duration::from_secs(10)));
        // The supervisor exits once QEMU is gone; give it the grace plus margin, then kill it.
        let deadline = Instant::now() + STOP_GRACE + Duration::from_secs(5);
        match running.supervisor {
            SupervisorProcess::Child {
                mut child,
                owner_pipe,
            } => {
                drop(owner_pipe);
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) | Err(_) => break,
                        Ok(None) if Instant::now() > deadline => {
                            tracing::warn!(vm = %self.config.vm_id, "supervisor did not exit; killing it");
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                        Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
            SupervisorProcess::Detached(pid) => {
                while smolvm_sys::process::pid_alive(pid) {
                    if Instant::now() > deadline {
                        // The pid is this VM's supervisor (checked alive just above).
                        let _ = smolvm_sys::process::kill(pid, libc::SIGKILL);
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        Ok(())
    }

    /// Stops the VM if needed and removes everything it left on the host: processes, sockets,
    /// files and its registry entry.
    pub fn delete(&self) -> Result<()> {
        self.stop()?;
        let mut inner = self.lock();
        if inner.state == SandboxState::Deleted {
            return Ok(());
        }
        // A VM that never started owns no directory (another VM may use the same name).
        if inner.state == SandboxState::Stopped {
            match std::fs::remove_dir_all(self.paths.dir()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("removing {}", self.paths.dir().display()),
                        e,
                    ))
                }
            }
            Store::open(&self.data)?.remove(&self.config.vm_id)?;
        }
        inner.state = SandboxState::Deleted;
        Ok(())
    }
}

impl Drop for SmolVm {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Err(e) = self.delete() {
            tracing::warn!(vm = %self.config.vm_id, "cleanup on drop failed: {e}");
        }
    }
}

/// `SMOLVM_COLD=1` makes every new VM boot from scratch (as [`SmolVm::set_cold`] does), e.g.
/// to run a test suite both ways.
fn cold_from_env() -> bool {
    std::env::var_os("SMOLVM_COLD").is_some_and(|v| v == "1")
}
