//! Bringing a VM up, in named steps: choose the backend and its confinement → plan the
//! machine (boot, or restore a snapshot) → launch the VMM → handshake with the agent (giving
//! the guest its identity) → put the configured environment in place. Any step that fails
//! kills what the steps before it started.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smolvm_protocol::{AgentInfo, AgentRequest, GuestIdentity, Response, PROTOCOL_VERSION};
use smolvm_vmm::jail::Confinement;
use smolvm_vmm::{Backend, LaunchOptions, MachineSpec, ParentThread};

use super::error::{Result, SupervisorError};
use super::router::Router;
use super::{console, restore, serve, snapshot, LaunchSpec, ReadyLine, Supervisor};
use crate::config::ValidConfig;
use crate::dirs::DataDir;
use crate::paths::VmPaths;

/// How long the guest gets from the VMM's start to the agent's handshake. Generous: under
/// software emulation on a loaded 2-core host a boot can take several seconds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// How long the agent gets to confirm the boot-time environment variables.
const ENV_TIMEOUT: Duration = Duration::from_secs(30);

/// Makes the backend a VM runs on, given the data directory (for cached host facts).
pub type BackendFactory<'a> = &'a dyn Fn(&DataDir) -> smolvm_vmm::Result<Box<dyn Backend>>;

/// The running VMM and the thread it was forked from (see [`ParentThread`]).
pub(super) struct Vmm(pub(super) Child, pub(super) Option<ParentThread>);

/// Kills the VMM when boot fails part-way, so that nothing outlives a failed start. Holds the
/// thread the VMM was forked from (if any), released only after the VMM has been reaped.
struct KillOnDrop(Option<Child>, Option<ParentThread>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Boots (or restores) the VM of `spec` and returns once its agent answered and its
/// environment is in place; clients are served from then on.
pub(super) fn boot(
    spec: &LaunchSpec,
    paths: &VmPaths,
    started: Instant,
    make_backend: BackendFactory<'_>,
) -> Result<(Arc<Supervisor>, Vmm)> {
    let config = &spec.config;
    let data = DataDir::at(&spec.data_dir);
    let backend = make_backend(&data).map_err(|e| SupervisorError::Backend(e.to_string()))?;
    let confinement = backend.confinement(&paths.jail_root());
    tracing::info!(
        "VM {}: backend {} ({}), VMM confinement: {}",
        config.vm_id,
        backend.name(),
        backend.accel(),
        confinement.describe()
    );

    let _ = std::fs::remove_file(paths.api_socket());
    let api = smolvm_sys::fs::bind_private(&paths.api_socket()).map_err(|e| {
        SupervisorError::host(
            format!("cannot listen on {}", paths.api_socket().display()),
            e,
        )
    })?;

    // Plan: a fresh boot, or a snapshot's state streamed in.
    let (incoming, restoring) = match &spec.restore_from {
        Some(dir) => {
            let (fd, prepared) = restore::prepare(dir)?;
            (Some(fd), Some(prepared))
        }
        None => (None, None),
    };
    let machine = config.machine_spec(paths, spec.ephemeral);

    // Launch.
    let (supervisor, mut guard, reader) = launch(
        spec,
        paths,
        backend.as_ref(),
        &machine,
        incoming,
        &confinement,
    )?;
    let pump = Arc::clone(&supervisor);
    std::thread::Builder::new()
        .name("agent-reader".into())
        .spawn(move || pump.router.pump_from_agent(reader))
        .map_err(|e| SupervisorError::host("cannot start a thread", e))?;
    if let Some(restoring) = restoring {
        restoring
            .start()?
            .finish(&supervisor, guard.0.as_mut().expect("child"))?;
    }

    // Handshake, with the guest's identity (fresh after every boot and every restore).
    let identity = GuestIdentity {
        hostname: config.vm_id.clone(),
        machine_id: spec
            .machine_id
            .clone()
            .unwrap_or_else(|| smolvm_sys::random::random_hex(16)),
        seed: smolvm_sys::random::random_hex(64),
    };
    let agent = handshake(&supervisor, guard.0.as_mut().expect("child"), identity)?;
    tracing::debug!("VM {}: handshake answered", config.vm_id);
    let _ = supervisor.agent.set(agent.clone());

    // Environment.
    if !config.env_vars.is_empty() {
        inject_env(&supervisor, config)?;
    }

    let serving = Arc::clone(&supervisor);
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || serve::accept_clients(&serving, api))
        .map_err(|e| SupervisorError::host("cannot start a thread", e))?;
    if spec.ephemeral {
        let owner = Arc::clone(&supervisor);
        std::thread::spawn(move || super::watch_owner(&owner));
    }
    super::report_ready(&ReadyLine {
        ok: true,
        error: None,
        qemu_pid: Some(supervisor.qemu_pid),
        accel: Some(supervisor.accel.clone()),
        agent: Some(agent),
        boot_ms: Some(started.elapsed().as_millis() as u64),
    });
    let vmm = guard.0.take().expect("child");
    Ok((supervisor, Vmm(vmm, guard.1.take())))
}

/// Spawns the VMM and builds the supervisor's shared state around its connections.
fn launch(
    spec: &LaunchSpec,
    paths: &VmPaths,
    backend: &dyn Backend,
    machine: &MachineSpec,
    incoming: Option<std::os::fd::OwnedFd>,
    confinement: &Confinement,
) -> Result<(Arc<Supervisor>, KillOnDrop, UnixStream)> {
    let config = &spec.config;
    let options = LaunchOptions {
        incoming,
        confinement: confinement.clone(),
    };
    let prepared = backend.prepare(machine, options)?;
    let spawned = smolvm_vmm::spawn(prepared, confinement)?;
    let pid = spawned.child.id();
    let guard = KillOnDrop(Some(spawned.child), spawned.parent);
    let _ = smolvm_sys::fs::write_atomic(&paths.qemu_pid(), pid.to_string().as_bytes());
    tracing::info!("VM {}: VMM pid {pid}", config.vm_id);
    log_console(spawned.console, &paths.console_log())
        .map_err(|e| SupervisorError::host("cannot start the console logger", e))?;
    let reader = spawned
        .channel
        .try_clone()
        .map_err(|e| SupervisorError::host("cannot clone the channel socket", e))?;
    let supervisor = Arc::new(Supervisor {
        vm_id: config.vm_id.clone(),
        config: config.clone(),
        paths: paths.clone(),
        qemu_pid: pid,
        accel: backend.accel().to_string(),
        agent: std::sync::OnceLock::new(),
        router: Router::new(spawned.channel),
        stopping: AtomicBool::new(false),
        qemu_exited: AtomicBool::new(false),
        persistent_env: (!spec.ephemeral).then(|| paths.saved_env()),
        paused: AtomicBool::new(false),
        snapshotting: Mutex::new(()),
        machine: Mutex::new(backend.machine(spawned.monitor, pid)),
    });
    Ok((supervisor, guard, reader))
}

/// Copies the guest's serial console into the capped `console.log` on a thread of its own
/// until QEMU closes it.
fn log_console(console: UnixStream, path: &Path) -> std::io::Result<()> {
    let log = console::ConsoleLog::open(path)?;
    std::thread::Builder::new()
        .name("console".into())
        .spawn(move || console::pump(console, log))?;
    Ok(())
}

/// Waits for the agent's answer to our `Hello`, watching QEMU meanwhile.
fn handshake(
    supervisor: &Supervisor,
    qemu: &mut Child,
    identity: GuestIdentity,
) -> Result<AgentInfo> {
    let replies = supervisor
        .router
        .request_internal(&AgentRequest::Hello {
            protocol: PROTOCOL_VERSION,
            host_time_ns: Some(snapshot::host_time_ns()),
            identity: Some(identity),
        })
        .map_err(SupervisorError::GuestGone)?;
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        match replies.recv_timeout(Duration::from_millis(20)) {
            Ok(frame) => {
                return match frame.to_response() {
                    Ok(Response::Hello(info)) => Ok(info),
                    Ok(other) => Err(SupervisorError::Agent(format!(
                        "the guest agent refused the handshake: {other:?}"
                    ))),
                    Err(e) => Err(SupervisorError::Agent(format!(
                        "malformed handshake answer: {e}"
                    ))),
                };
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(SupervisorError::GuestGone(
                    supervisor
                        .router
                        .closed_reason()
                        .unwrap_or_else(|| "guest channel closed".into()),
                ));
            }
        }
        if let Ok(Some(status)) = qemu.try_wait() {
            return Err(SupervisorError::GuestGone(format!(
                "the guest stopped during boot (QEMU {status}); see console.log"
            )));
        }
        if Instant::now() > deadline {
            return Err(SupervisorError::Timeout {
                what: "the guest agent's first answer",
                limit: BOOT_TIMEOUT,
                hint: "; see console.log",
            });
        }
    }
}

/// Puts the configuration's environment variables in place before the VM is reported ready.
fn inject_env(supervisor: &Supervisor, config: &ValidConfig) -> Result<()> {
    let replies = supervisor
        .router
        .request_internal(&AgentRequest::EnvSet {
            vars: config.env_vars.clone(),
            merge: true,
        })
        .map_err(SupervisorError::GuestGone)?;
    let frame = replies
        .recv_timeout(ENV_TIMEOUT)
        .map_err(|_| SupervisorError::Timeout {
            what: "confirming the boot-time environment variables",
            limit: ENV_TIMEOUT,
            hint: "",
        })?;
    match frame.to_response() {
        Ok(Response::EnvKeys { .. }) => Ok(()),
        Ok(other) => Err(SupervisorError::Agent(format!(
            "setting boot-time environment variables failed: {other:?}"
        ))),
        Err(e) => Err(SupervisorError::Agent(e.to_string())),
    }
}
