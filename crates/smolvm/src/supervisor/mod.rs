//! The per-VM supervisor: a small host process that owns one VM.
//!
//! It starts the VMM (through a [`smolvm_vmm::Backend`]; QEMU in production), holds the host end of the guest channel for the VM's whole life (the agent
//! never sees a disconnected port), serves any number of clients on the VM's API socket, and is
//! the one place that cleans up: when QEMU exits for any reason it records why and removes the
//! VM's sockets (and, for an ephemeral VM, its whole directory). QEMU gets `PDEATHSIG`, so a
//! killed supervisor takes its VM with it; an ephemeral VM's supervisor stops the VM when its
//! owner (the process that created it) goes away, detected as EOF on its stdin.

mod accept;
mod boot;
mod console;
mod error;
pub(crate) mod restore;
mod router;
mod serve;
pub(crate) mod snapshot;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smolvm_protocol::{AgentInfo, AgentRequest, Response};
use smolvm_vmm::qemu::{find_qemu, QemuBackend};
use smolvm_vmm::{Backend, Machine};

use crate::config::ValidConfig;
use crate::dirs::DataDir;
use crate::paths::VmPaths;
pub use boot::BackendFactory;
use boot::Vmm;
use router::Router;

pub(crate) use crate::contract::{ExitRecord, LaunchSpec, ReadyLine};

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
    /// The machine's controls (its VMM's monitor).
    pub(crate) machine: Mutex<Box<dyn Machine>>,
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
        let _ = self.router.request_internal(&AgentRequest::Shutdown);
    }
}

/// Runs the supervisor for the VM in `dir` on QEMU until the VM ends. Returns the process
/// exit code.
pub fn run(dir: &Path) -> i32 {
    run_with(dir, &qemu_backend)
}

/// The production backend: QEMU with the accelerator this host allows.
fn qemu_backend(data: &DataDir) -> smolvm_vmm::Result<Box<dyn Backend>> {
    let accel = smolvm_vmm::accel::choose_accel();
    tracing::info!("accelerator {} ({})", accel.accel.as_str(), accel.reason);
    let tsc_khz = smolvm_vmm::accel::tsc_khz(&data.host_facts());
    let qemu = find_qemu()?;
    Ok(Box::new(QemuBackend::new(qemu, accel, tsc_khz)))
}

/// Like [`run`], on the backend `make_backend` returns (tests run the supervisor on a backend
/// whose "VM" is the agent as a host process).
pub fn run_with(dir: &Path, make_backend: BackendFactory<'_>) -> i32 {
    let paths = VmPaths::new(dir);
    let started = Instant::now();
    let spec: LaunchSpec = match std::fs::read(paths.spec())
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(spec) => spec,
        Err(reason) => {
            let error = error::SupervisorError::Spec {
                path: paths.spec(),
                reason,
            };
            report_ready(&failed(&error));
            return 1;
        }
    };
    let _ = smolvm_sys::fs::write_atomic(
        &paths.supervisor_pid(),
        std::process::id().to_string().as_bytes(),
    );
    match boot::boot(&spec, &paths, started, make_backend) {
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
            report_ready(&failed(&e));
            finish(&paths, &spec, "failed", &e.to_string());
            1
        }
    }
}

fn failed(error: &error::SupervisorError) -> ReadyLine {
    ReadyLine {
        ok: false,
        error: Some(error.to_string()),
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
    let _ = smolvm_sys::stdio::stdout_to_null();
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
    let Ok(replies) = supervisor.router.request_internal(&AgentRequest::EnvList) else {
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
