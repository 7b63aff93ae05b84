//! The per-VM supervisor: a small host process that owns one VM.
//!
//! It starts QEMU, holds the host end of the guest channel for the VM's whole life (the agent
//! never sees a disconnected port), serves any number of clients on the VM's API socket, and is
//! the one place that cleans up: when QEMU exits for any reason it records why and removes the
//! VM's sockets (and, for an ephemeral VM, its whole directory). QEMU gets `PDEATHSIG`, so a
//! killed supervisor takes its VM with it; an ephemeral VM's supervisor stops the VM when its
//! owner (the process that created it) goes away, detected as EOF on its stdin.

mod accept;
mod console;
pub mod restore;
mod router;
mod serve;
pub(crate) mod snapshot;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use smolvm_protocol::{AgentInfo, GuestIdentity, Request, Response, PROTOCOL_VERSION};

use crate::backend::jail;
use crate::backend::qemu::{find_qemu, QemuBackend};
use crate::backend::{Backend, LaunchOptions};
use crate::config::ValidConfig;
use crate::dirs::DataDir;
use crate::paths::VmPaths;
use router::Router;

/// How long the guest gets from QEMU start to the agent's handshake. Generous: under software
/// emulation on a loaded 2-core host a boot can take several seconds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// Everything the supervisor needs to run a VM, written by the SDK to `vm.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
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
pub struct ReadyLine {
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
pub struct ExitRecord {
    /// `stopped` (asked to), `crashed` (QEMU died on its own), or `failed` (never came up).
    pub state: String,
    /// Details.
    pub reason: String,
    /// Seconds since the Unix epoch.
    pub at_unix: u64,
}

/// State shared by the supervisor's threads.
pub(crate) struct Supervisor {
    pub(crate) vm_id: String,
    pub(crate) config: ValidConfig,
    pub(crate) paths: VmPaths,
    pub(crate) qemu_pid: u32,
    pub(crate) accel: String,
    pub(crate) agent: std::sync::OnceLock<AgentInfo>,
    pub(crate) router: Router,
    /// Set once a stop was asked for (by a client, or because the owner left).
    pub(crate) stopping: AtomicBool,
    pub(crate) qemu_exited: AtomicBool,
    /// Persistent sandboxes save their managed variables at stop (see [`save_env`]).
    pub(crate) persistent_env: Option<PathBuf>,
    /// The user paused the guest (see [`snapshot::pause`]).
    pub(crate) paused: AtomicBool,
    /// Held while a snapshot is taken (or a pause/resume is applied), so that they never
    /// interleave.
    pub(crate) snapshotting: Mutex<()>,
    /// The monitor: a socket pair with QEMU, its session negotiated on first use.
    pub(crate) qmp: Mutex<crate::backend::qmp::QmpLink>,
}

impl Supervisor {
    /// Begins a stop: asks the guest to shut down cleanly and kills QEMU if it has not exited
    /// within `grace`. Idempotent.
    pub(crate) fn begin_stop(self: &Arc<Self>, grace: Duration) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!("stopping VM {} (grace {grace:?})", self.vm_id);
        // The deadline is armed first: nothing below (a guest that no longer reads its
        // channel, a monitor that does not answer) can keep the VM alive past it.
        let this = Arc::clone(self);
        std::thread::spawn(move || {
            std::thread::sleep(grace);
            if !this.qemu_exited.load(Ordering::SeqCst) {
                tracing::warn!(
                    "VM {} did not shut down within {grace:?}; killing QEMU",
                    this.vm_id
                );
                // QEMU is our child and not yet reaped (qemu_exited is still false), so the
                // pid cannot have been reused.
                let _ = smolvm_sys::process::kill(this.qemu_pid, libc::SIGKILL);
            }
        });
        if self.paused.load(Ordering::SeqCst) {
            // A paused guest cannot shut down cleanly (or answer for its variables).
            if let Err(e) = self.continue_guest() {
                tracing::warn!("cannot resume VM {} to stop it: {e}", self.vm_id);
            }
            let _ = std::fs::remove_file(self.paths.paused_marker());
        }
        if let Some(path) = &self.persistent_env {
            save_env(self, path);
        }
        let _ = self.router.request_internal(&Request::Shutdown);
    }
}

/// Runs the supervisor for the VM in `dir` until the VM ends. Returns the process exit code.
pub fn run(dir: &Path) -> i32 {
    let paths = VmPaths::new(dir);
    let started = Instant::now();
    let spec: LaunchSpec = match std::fs::read(paths.spec())
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(e) => {
            report_ready(&failed(format!(
                "cannot read {}: {e}",
                paths.spec().display()
            )));
            return 1;
        }
    };
    let _ = smolvm_sys::fs::write_atomic(
        &paths.supervisor_pid(),
        std::process::id().to_string().as_bytes(),
    );
    match boot(&spec, &paths, started) {
        Ok((supervisor, Vmm(mut qemu, parent))) => {
            let status = qemu.wait();
            drop(parent);
            supervisor.qemu_exited.store(true, Ordering::SeqCst);
            let (state, reason) = if supervisor.stopping.load(Ordering::SeqCst) {
                ("stopped", "stopped on request".to_string())
            } else {
                (
                    "crashed",
                    format!("QEMU exited on its own ({status:?}); see console.log"),
                )
            };
            tracing::info!("VM {} ended: {state}: {reason}", spec.config.vm_id);
            supervisor
                .router
                .close(format!("VM {} is {state}", spec.config.vm_id));
            finish(&paths, &spec, state, &reason);
            0
        }
        Err(e) => {
            tracing::error!("VM {} failed to start: {e}", spec.config.vm_id);
            report_ready(&failed(e.clone()));
            finish(&paths, &spec, "failed", &e);
            1
        }
    }
}

fn failed(error: String) -> ReadyLine {
    ReadyLine {
        ok: false,
        error: Some(error),
        qemu_pid: None,
        accel: None,
        agent: None,
        boot_ms: None,
    }
}

/// Prints the ready line, then points stdout at /dev/null so that the launching process may
/// close its end without the supervisor ever getting SIGPIPE.
fn report_ready(line: &ReadyLine) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", serde_json::to_string(line).expect("serialises"));
    let _ = out.flush();
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: both descriptors are valid; dup2 replaces fd 1 atomically.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
}

/// Removes what must not outlive the VM and records how it ended.
fn finish(paths: &VmPaths, spec: &LaunchSpec, state: &str, reason: &str) {
    for path in [
        paths.api_socket(),
        paths.channel_socket(),
        paths.qmp_socket(),
        paths.qemu_pid(),
        paths.supervisor_pid(),
        paths.paused_marker(),
        paths.migration_socket(),
    ] {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_dir(paths.jail_root());
    if spec.ephemeral {
        let _ = std::fs::remove_dir_all(paths.dir());
        if let Ok(store) = crate::store::Store::open(&DataDir::at(&spec.data_dir)) {
            let _ = store.remove(&spec.config.vm_id);
        }
        return;
    }
    let at_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let record = ExitRecord {
        state: state.into(),
        reason: reason.into(),
        at_unix,
    };
    let _ = smolvm_sys::fs::write_atomic(
        &paths.exit_record(),
        &serde_json::to_vec(&record).expect("serialises"),
    );
}

/// Kills QEMU when boot fails part-way, so that nothing outlives a failed start. Holds the
/// thread QEMU was forked from (if any), released only after QEMU has been reaped.
struct KillOnDrop(Option<Child>, Option<crate::backend::ParentThread>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The running VMM and the thread it was forked from (see [`crate::backend::ParentThread`]).
struct Vmm(Child, Option<crate::backend::ParentThread>);

fn boot(
    spec: &LaunchSpec,
    paths: &VmPaths,
    started: Instant,
) -> Result<(Arc<Supervisor>, Vmm), String> {
    let config = &spec.config;
    let data = DataDir::at(&spec.data_dir);
    let accel = crate::host::choose_accel();
    tracing::info!(
        "VM {}: accelerator {} ({})",
        config.vm_id,
        accel.accel.as_str(),
        accel.reason
    );
    let backend = QemuBackend::new(
        find_qemu().map_err(|e| e.to_string())?,
        accel.clone(),
        crate::host::tsc_khz(&data),
    )
    .with_volatile_disk(spec.ephemeral);
    let confinement = jail::choose(
        &paths.jail_root(),
        backend.binary(),
        accel.accel == crate::host::Accel::Kvm,
    );
    tracing::info!(
        "VM {}: VMM confinement: {}",
        config.vm_id,
        confinement.describe()
    );

    let _ = std::fs::remove_file(paths.api_socket());
    let api = smolvm_sys::fs::bind_private(&paths.api_socket())
        .map_err(|e| format!("cannot listen on {}: {e}", paths.api_socket().display()))?;

    let (incoming, restoring) = match &spec.restore_from {
        Some(dir) => {
            let (fd, prepared) = restore::prepare(dir)?;
            (Some(fd), Some(prepared))
        }
        None => (None, None),
    };
    let prepared = backend.prepare(
        config,
        paths,
        LaunchOptions {
            incoming,
            confinement: confinement.clone(),
        },
    )?;
    let spawned = crate::backend::spawn(prepared, &confinement)?;
    let qemu_pid = spawned.child.id();
    let mut guard = KillOnDrop(Some(spawned.child), spawned.parent);
    let _ = smolvm_sys::fs::write_atomic(&paths.qemu_pid(), qemu_pid.to_string().as_bytes());
    tracing::info!("VM {}: QEMU pid {qemu_pid}", config.vm_id);
    log_console(spawned.console, &paths.console_log())
        .map_err(|e| format!("cannot start the console logger: {e}"))?;

    let incoming = restoring.map(restore::Prepared::start).transpose()?;
    let stream = spawned.channel;
    tracing::debug!("VM {}: guest channel connected", config.vm_id);
    let reader = stream
        .try_clone()
        .map_err(|e| format!("cannot clone the channel socket: {e}"))?;
    let router = Router::new(stream);

    let supervisor = Arc::new(Supervisor {
        vm_id: config.vm_id.clone(),
        config: config.clone(),
        paths: paths.clone(),
        qemu_pid,
        accel: backend.accel().to_string(),
        agent: std::sync::OnceLock::new(),
        router,
        stopping: AtomicBool::new(false),
        qemu_exited: AtomicBool::new(false),
        persistent_env: (!spec.ephemeral).then(|| paths.saved_env()),
        paused: AtomicBool::new(false),
        snapshotting: Mutex::new(()),
        qmp: Mutex::new(crate::backend::qmp::QmpLink::new(spawned.qmp)),
    });
    let pump = Arc::clone(&supervisor);
    std::thread::Builder::new()
        .name("agent-reader".into())
        .spawn(move || pump.router.pump_from_agent(reader))
        .map_err(|e| format!("cannot start a thread: {e}"))?;

    if let Some(incoming) = incoming {
        incoming.finish(&supervisor, guard.0.as_mut().expect("child"))?;
    }
    let identity = GuestIdentity {
        hostname: config.vm_id.clone(),
        machine_id: spec
            .machine_id
            .clone()
            .unwrap_or_else(|| smolvm_sys::random::random_hex(16)),
        seed: smolvm_sys::random::random_hex(64),
    };
    tracing::debug!("VM {}: guest running, handshake", config.vm_id);
    let agent = handshake(&supervisor, guard.0.as_mut().expect("child"), identity)?;
    tracing::debug!("VM {}: handshake answered", config.vm_id);
    let _ = supervisor.agent.set(agent.clone());
    if !config.env_vars.is_empty() {
        inject_env(&supervisor, config)?;
    }

    let serving = Arc::clone(&supervisor);
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || serve::accept_clients(&serving, api))
        .map_err(|e| format!("cannot start a thread: {e}"))?;
    if spec.ephemeral {
        let owner = Arc::clone(&supervisor);
        std::thread::spawn(move || watch_owner(&owner));
    }
    report_ready(&ReadyLine {
        ok: true,
        error: None,
        qemu_pid: Some(qemu_pid),
        accel: Some(supervisor.accel.clone()),
        agent: Some(agent),
        boot_ms: Some(started.elapsed().as_millis() as u64),
    });
    let qemu = guard.0.take().expect("child");
    Ok((supervisor, Vmm(qemu, guard.1.take())))
}

/// Stops an ephemeral VM once its owner is gone: the owner holds the write end of our stdin,
/// and the kernel closes it however the owner ends (drop, exit, crash, SIGKILL).
fn watch_owner(supervisor: &Arc<Supervisor>) {
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
    tracing::info!("VM {}: owner went away", supervisor.vm_id);
    supervisor.begin_stop(Duration::from_secs(3));
}

/// Saves the guest's managed variables, so that a persistent sandbox whose root filesystem
/// lives in RAM gets them back at its next start.
fn save_env(supervisor: &Supervisor, path: &Path) {
    let Ok(replies) = supervisor.router.request_internal(&Request::EnvList) else {
        return;
    };
    match replies
        .recv_timeout(Duration::from_secs(5))
        .map(|f| f.to_response())
    {
        Ok(Ok(Response::EnvVars { vars })) => {
            let json = serde_json::to_vec(&vars).expect("serialises");
            if let Err(e) = smolvm_sys::fs::write_atomic(path, &json) {
                tracing::warn!(
                    "cannot save environment variables to {}: {e}",
                    path.display()
                );
            }
        }
        other => tracing::warn!("cannot read environment variables before stop: {other:?}"),
    }
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
) -> Result<AgentInfo, String> {
    let replies = supervisor.router.request_internal(&Request::Hello {
        protocol: PROTOCOL_VERSION,
        host_time_ns: Some(snapshot::host_time_ns()),
        identity: Some(identity),
    })?;
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        match replies.recv_timeout(Duration::from_millis(20)) {
            Ok(frame) => {
                return match frame.to_response() {
                    Ok(Response::Hello(info)) => Ok(info),
                    Ok(other) => Err(format!("the guest agent refused the handshake: {other:?}")),
                    Err(e) => Err(format!("malformed handshake answer: {e}")),
                };
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Err(supervisor
                    .router
                    .closed_reason()
                    .unwrap_or_else(|| "guest channel closed".into()));
            }
        }
        if let Ok(Some(status)) = qemu.try_wait() {
            return Err(format!(
                "the guest stopped during boot (QEMU {status}); see console.log"
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the guest agent did not answer within {BOOT_TIMEOUT:?}; see console.log"
            ));
        }
    }
}

/// Puts the configuration's environment variables in place before the VM is reported ready.
fn inject_env(supervisor: &Supervisor, config: &ValidConfig) -> Result<(), String> {
    let replies = supervisor.router.request_internal(&Request::EnvSet {
        vars: config.env_vars.clone(),
        merge: true,
    })?;
    let frame = replies.recv_timeout(Duration::from_secs(30)).map_err(|_| {
        "the guest agent did not confirm the boot-time environment variables".to_string()
    })?;
    match frame.to_response() {
        Ok(Response::EnvKeys { .. }) => Ok(()),
        Ok(other) => Err(format!(
            "setting boot-time environment variables failed: {other:?}"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// The last lines of a log file, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Answers a supervisor-level request.
pub(crate) fn status_of(supervisor: &Supervisor) -> Response {
    Response::Status(smolvm_protocol::SupervisorStatus {
        vm_id: supervisor.vm_id.clone(),
        state: if supervisor.stopping.load(Ordering::SeqCst) {
            "stopping"
        } else if supervisor.paused.load(Ordering::SeqCst) {
            "paused"
        } else {
            "running"
        }
        .into(),
        qemu_pid: supervisor.qemu_pid,
        supervisor_pid: std::process::id(),
        accel: supervisor.accel.clone(),
        agent: supervisor
            .agent
            .get()
            .cloned()
            .unwrap_or_else(|| AgentInfo {
                protocol: 0,
                agent_version: String::new(),
                capabilities: Vec::new(),
                uptime_ms: 0,
            }),
    })
}

/// Times `rounds` echo round trips on the guest channel.
pub(crate) fn channel_bench(supervisor: &Supervisor, rounds: u32, size: u32) -> Response {
    let payload = vec![0x5a; size as usize];
    let mut round_trips_ns = Vec::with_capacity(rounds as usize);
    for _ in 0..rounds {
        let start = Instant::now();
        let reply = supervisor
            .router
            .send_internal(smolvm_protocol::FrameKind::Echo, payload.clone())
            .and_then(|rx| {
                rx.recv_timeout(Duration::from_secs(10))
                    .map_err(|e| e.to_string())
            });
        match reply {
            Ok(frame) if frame.payload == payload => {
                round_trips_ns.push(start.elapsed().as_nanos() as u64)
            }
            Ok(_) => {
                return Response::error(
                    smolvm_protocol::ErrorKind::Internal,
                    "echo came back altered",
                )
            }
            Err(e) => return Response::error(smolvm_protocol::ErrorKind::VmNotRunning, e),
        }
    }
    Response::ChannelBench { round_trips_ns }
}

/// Logs to stderr, which the launcher points at the VM's `supervisor.log`. `SMOLVM_LOG`
/// takes a tracing filter (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SMOLVM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
