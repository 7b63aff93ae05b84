//! [`FakeBackend`]: a "VM" that is the guest agent running as a host process.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use smolvm_vmm::inherit::Inherited;
use smolvm_vmm::jail::Confinement;
use smolvm_vmm::{
    Backend, Error, LaunchOptions, Machine, MachineSpec, PreparedVm, Result, SaveStatus,
};

/// The backend's name, in logs and errors ("the fake backend cannot ...").
const NAME: &str = "fake";

/// Where the agent finds the guest channel (`--channel-fd`).
pub const CHANNEL_FD: i32 = 3;

/// The folder, inside the VM's directory, that stands in for the guest's machine (the
/// agent's `--state-dir`). Emptied at every launch, as a RAM-backed guest is at every boot,
/// and removed with the VM's directory.
pub const GUEST_DIR: &str = "fake-guest";

/// Names the agent binary to run, overriding the search of [`find_agent`].
pub const AGENT_ENV: &str = "SMOLVM_TEST_AGENT";

/// The host-mode agent: `$SMOLVM_TEST_AGENT`, else `smolvm-fake-agent` (built by this crate
/// from the agent library), else `smolvm-agent`, beside the running program or one or two
/// folders up (as from `target/release/deps`).
pub fn find_agent() -> std::result::Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(AGENT_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("locating the running program: {e}"))?;
    ["smolvm-fake-agent", "smolvm-agent"]
        .iter()
        .flat_map(|name| exe.ancestors().skip(1).take(3).map(move |d| d.join(name)))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no smolvm-fake-agent or smolvm-agent near {}; build the workspace or set {AGENT_ENV}",
                exe.display()
            )
        })
}

/// A backend whose machine is `smolvm-agent --host-mode` on the host: the supervisor holds
/// the other end of its channel, its stderr is the console, and nothing emulates hardware.
#[derive(Debug, Clone)]
pub struct FakeBackend {
    agent: PathBuf,
    guest: PathBuf,
}

impl FakeBackend {
    /// Runs `agent` in host mode with its state in `vm_dir`'s [`GUEST_DIR`].
    pub fn new(agent: impl Into<PathBuf>, vm_dir: &Path) -> Self {
        Self {
            agent: agent.into(),
            guest: vm_dir.join(GUEST_DIR),
        }
    }

    /// The agent's state dir: the stand-in for the guest's machine.
    pub fn guest_dir(&self) -> &Path {
        &self.guest
    }

    /// A fresh, private state dir.
    fn fresh_guest_dir(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.guest) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        smolvm_sys::fs::create_dir_private(&self.guest)
    }
}

impl Backend for FakeBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn accel(&self) -> &'static str {
        "host"
    }

    fn confinement(&self, _jail_root: &Path) -> Confinement {
        Confinement::Off
    }

    fn prepare(&self, _spec: &MachineSpec, options: LaunchOptions) -> Result<PreparedVm> {
        if options.incoming.is_some() {
            return Err(Error::Unsupported {
                backend: NAME,
                what: "load a saved machine state (restores need a real VM)",
            });
        }
        self.fresh_guest_dir()
            .map_err(|e| Error::io("cannot prepare the fake guest's state dir", e))?;
        let pair = || UnixStream::pair().map_err(|e| Error::io("cannot create a socket pair", e));
        let (channel, agent_channel) = pair()?;
        let (console, agent_stderr) = pair()?;
        // Nothing speaks on the monitor: the controls are signals (see `FakeMachine`).
        let (monitor, _unused) = pair()?;
        let mut inherited = Inherited::new();
        let fd = inherited.add(OwnedFd::from(agent_channel), CHANNEL_FD);
        let mut command = Command::new(&self.agent);
        command
            .arg("--host-mode")
            .arg("--channel-fd")
            .arg(fd.to_string())
            .arg("--state-dir")
            .arg(&self.guest)
            // A guest starts with nothing of the host's environment.
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stderr(Stdio::from(OwnedFd::from(agent_stderr)))
            // Its own process group, so that a pause stops it and not the supervisor.
            .process_group(0);
        // Not the supervisor's working directory: a guest cannot see the host's.
        command.current_dir(&self.guest);
        Ok(PreparedVm {
            command,
            inherited,
            channel,
            monitor,
            console,
        })
    }

    fn machine(&self, monitor: UnixStream, pid: u32) -> Box<dyn Machine> {
        Box::new(FakeMachine {
            _monitor: monitor,
            pid,
        })
    }
}

/// The controls of a [`FakeBackend`] machine: signals to the agent's process group.
///
/// Pausing stops the agent (so nothing reaches or leaves the "guest") but not the commands it
/// started, which have process groups of their own.
#[derive(Debug)]
pub struct FakeMachine {
    _monitor: UnixStream,
    pid: u32,
}

impl FakeMachine {
    fn signal_group(&self, signal: i32) -> Result<()> {
        // The group is the agent's own (`process_group(0)` at spawn); a call racing the
        // agent's exit gets ESRCH.
        smolvm_sys::process::kill_group(self.pid, signal)
            .map_err(|e| Error::io("cannot signal the fake guest", e))
    }
}

fn unsupported<T>() -> Result<T> {
    Err(Error::Unsupported {
        backend: NAME,
        what: "save a machine's state (snapshots need a real VM)",
    })
}

impl Machine for FakeMachine {
    fn pause(&mut self) -> Result<()> {
        self.signal_group(libc::SIGSTOP)
    }

    fn resume(&mut self) -> Result<()> {
        self.signal_group(libc::SIGCONT)
    }

    fn save_state(&mut self, _stream: OwnedFd) -> Result<()> {
        unsupported()
    }

    fn save_status(&mut self) -> Result<SaveStatus> {
        unsupported()
    }

    fn is_loading(&mut self) -> Result<bool> {
        unsupported()
    }
}
