//! The backend seam: from a [`MachineSpec`] to a spawned, confined VMM process.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use crate::error::{Error, Result};
use crate::inherit::{self, Inherited};
use crate::jail::{self, Confinement};
use crate::machine::Machine;
use crate::spec::MachineSpec;

/// What a launch needs beyond the configuration.
#[derive(Debug)]
pub struct LaunchOptions {
    /// A migration stream to load instead of booting (a restore).
    pub incoming: Option<OwnedFd>,
    /// How the VMM is confined.
    pub confinement: Confinement,
}

/// A VM ready to be spawned.
#[derive(Debug)]
pub struct PreparedVm {
    /// The VMM's command line.
    pub command: Command,
    /// Descriptors the VMM inherits at fixed numbers.
    pub inherited: Inherited,
    /// The host end of the guest channel.
    pub channel: UnixStream,
    /// The host end of the VMM's monitor.
    pub monitor: UnixStream,
    /// The host end of the serial console.
    pub console: UnixStream,
}

/// A way to run a VM.
///
/// The machine's life, and who does what: **boot** — [`Backend::prepare`] then [`spawn`];
/// **restore** — the same with [`LaunchOptions::incoming`] carrying the saved state, then
/// [`Machine::is_loading`] until it is in and [`Machine::resume`]; **pause/resume** and the
/// **snapshot stream** — [`Machine`]; **shutdown** — the guest powers itself off (the agent's
/// `Shutdown`) and the VMM process must then exit on its own (QEMU: `-no-reboot`); a VMM that
/// does not within the grace period is killed by the supervisor, which spawned it and alone
/// reaps it. The **device plan** is the [`MachineSpec`] plus the three connections every
/// machine has: the guest channel, the monitor and the console.
pub trait Backend: Send + Sync {
    /// Short name for logs and `doctor` (`qemu`).
    fn name(&self) -> &'static str;
    /// The accelerator in use (`kvm`, `tcg`).
    fn accel(&self) -> &'static str;
    /// How this backend's VMM is confined on this host; `jail_root` is an empty folder of
    /// the VM's for a jail's root filesystem.
    fn confinement(&self, jail_root: &std::path::Path) -> Confinement;
    /// Opens everything `spec` boots from (refusing a tampered disk) and builds the VMM's
    /// command. The process must exit when the guest powers off or resets.
    fn prepare(&self, spec: &MachineSpec, options: LaunchOptions) -> Result<PreparedVm>;
    /// The controls of a machine spawned from this backend: `monitor` is its monitor's end
    /// (from [`Spawned`]), `pid` its process.
    fn machine(&self, monitor: UnixStream, pid: u32) -> Box<dyn Machine>;
}

/// The VMM's process and the supervisor's ends of its connections.
pub struct Spawned {
    /// The VMM.
    pub child: Child,
    /// The guest channel.
    pub channel: UnixStream,
    /// The monitor.
    pub monitor: UnixStream,
    /// The serial console.
    pub console: UnixStream,
    /// The thread that forked a jailed VMM; see [`ParentThread`].
    pub parent: Option<ParentThread>,
}

/// Keeps alive the thread that forked the VMM. A jailed VMM is forked by a thread of its own
/// (a thread that made a new PID namespace for its children can create no more threads), and
/// the VMM's parent-death signal fires when *that thread* ends: drop this only once the VMM
/// has been reaped.
pub struct ParentThread {
    release: std::sync::mpsc::Sender<()>,
}

impl Drop for ParentThread {
    fn drop(&mut self) {
        let _ = self.release.send(());
    }
}

/// Spawns a prepared VM: in the child, places the inherited descriptors, enters the jail
/// (when `confinement` has one), and ties the VMM's life to the calling thread's
/// (`PR_SET_PDEATHSIG`, set after the identity change, which would clear it).
pub fn spawn(prepared: PreparedVm, confinement: &Confinement) -> Result<Spawned> {
    let PreparedVm {
        mut command,
        inherited,
        channel,
        monitor,
        console,
    } = prepared;
    let jail = match confinement {
        Confinement::Jailed(jail) => Some(
            jail.prepare()
                .map_err(|e| Error::io("cannot prepare the VMM's jail", e))?,
        ),
        _ => None,
    };
    let jailed = jail.is_some();
    command.stdin(Stdio::null()).stdout(Stdio::null());
    let pairs = inherited.pairs();
    let parent = std::process::id() as i32;
    // SAFETY: the closure only makes async-signal-safe system calls and does not allocate
    // (`pairs` and the jail were built before the fork); the descriptors in `pairs` stay open
    // in the parent until `spawn` returns, since `inherited` lives until then.
    unsafe {
        command.pre_exec(move || {
            inherit::place(&pairs)?;
            if let Some(jail) = &jail {
                jail.enter()?;
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // The parent may have died before PDEATHSIG was armed (it is then re-parented).
            if libc::getppid() != parent && jail.is_none() {
                return Err(std::io::Error::other("supervisor died before QEMU started"));
            }
            Ok(())
        });
    }
    let (child, parent) = if jailed {
        let (child, parent) = spawn_in_pid_namespace(command)?;
        (child, Some(parent))
    } else {
        let child = command
            .spawn()
            .map_err(|e| Error::io("cannot start the VMM", e))?;
        (child, None)
    };
    drop(inherited);
    Ok(Spawned {
        child,
        channel,
        monitor,
        console,
        parent,
    })
}

/// Forks `command` from a thread of its own that first gives its children a new PID
/// namespace (QEMU is PID 1 there and sees no other process), then waits to be released.
fn spawn_in_pid_namespace(mut command: Command) -> Result<(Child, ParentThread)> {
    let (result_tx, result_rx) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("vmm-parent".into())
        .spawn(move || {
            let child = jail::new_pid_namespace_for_children()
                .map_err(|e| Error::io("cannot create a PID namespace for the VMM", e))
                .and_then(|()| {
                    command
                        .spawn()
                        .map_err(|e| Error::io("cannot start the VMM", e))
                });
            let started = child.is_ok();
            let _ = result_tx.send(child);
            if started {
                // Until the supervisor has reaped the VMM (or is gone itself).
                let _ = released.recv();
            }
        })
        .map_err(|e| Error::io("cannot start a thread", e))?;
    let child = result_rx.recv().map_err(|_| {
        Error::io(
            "the VMM's parent thread died",
            std::io::Error::other("no result"),
        )
    })??;
    Ok((child, ParentThread { release }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vmm_that_cannot_be_executed_fails_spawn_with_the_reason() {
        let mut inherited = Inherited::new();
        let (_keep, theirs) = UnixStream::pair().unwrap();
        inherited.add(OwnedFd::from(theirs), 9);
        let (channel, _) = UnixStream::pair().unwrap();
        let (monitor, _) = UnixStream::pair().unwrap();
        let (console, _) = UnixStream::pair().unwrap();
        let prepared = PreparedVm {
            command: Command::new("/nonexistent/smolvm-test-vmm"),
            inherited,
            channel,
            monitor,
            console,
        };
        let err = spawn(prepared, &Confinement::Off)
            .err()
            .expect("spawn reported success");
        assert!(err.to_string().contains("No such file"), "{err}");
    }
}
