//! Starting a VM's supervisor process and waiting until the VM answers.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::contract::ReadyLine;
use crate::error::{Error, Result};
use crate::paths::VmPaths;

/// How to start a supervisor: a program and the arguments before `--dir <vm dir>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launcher {
    program: PathBuf,
    args: Vec<OsString>,
}

impl Launcher {
    /// A launcher running `program args... --dir <vm dir>`. The Python package uses this to
    /// run the supervisor through its own interpreter.
    pub fn new(program: impl Into<PathBuf>, args: Vec<OsString>) -> Self {
        Self {
            program: program.into(),
            args,
        }
    }

    /// Finds the `smolvm-supervisor` binary: `$SMOLVM_SUPERVISOR`, else beside the running
    /// program (or one or two folders up, as in `target/debug/deps`), else on `PATH`.
    pub fn find() -> Result<Self> {
        if let Some(path) = std::env::var_os("SMOLVM_SUPERVISOR").filter(|p| !p.is_empty()) {
            return Ok(Self::new(path, Vec::new()));
        }
        let exe =
            std::env::current_exe().map_err(|e| Error::io("locating the running program", e))?;
        let beside = exe
            .ancestors()
            .skip(1)
            .take(3)
            .map(|d| d.join("smolvm-supervisor"))
            .find(|p| p.is_file());
        let found = beside.or_else(|| smolvm_vmm::qemu::find_in_path("smolvm-supervisor"));
        found.map(|p| Self::new(p, Vec::new())).ok_or_else(|| Error::MissingFile {
            what: "smolvm-supervisor",
            path: exe.with_file_name("smolvm-supervisor"),
            hint: "install it beside the smolvm binary (cargo build --release builds both) or set SMOLVM_SUPERVISOR".into(),
        })
    }
}

/// A supervisor that reported its VM ready.
pub struct Started {
    /// The supervisor process (reaped by whoever holds it).
    pub child: Child,
    /// Held by the owner of an ephemeral VM; dropping it stops the VM.
    pub owner_pipe: Option<ChildStdin>,
    /// What the supervisor reported.
    pub ready: ReadyLine,
}

/// Starts the supervisor for the VM whose spec is already written in `paths`, and waits for
/// its ready line. An ephemeral VM is tied to this process through a pipe on the supervisor's
/// stdin; a persistent one is detached (own session, stdin from /dev/null).
pub fn start(
    launcher: &Launcher,
    paths: &VmPaths,
    vm_id: &str,
    ephemeral: bool,
) -> Result<Started> {
    let log = smolvm_sys::fs::open_private_append(&paths.supervisor_log())
        .map_err(|e| Error::io(format!("opening {}", paths.supervisor_log().display()), e))?;
    let mut command = Command::new(&launcher.program);
    command.args(&launcher.args).arg("--dir").arg(paths.dir());
    command.stdin(if ephemeral {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(log);
    // A session of its own keeps the supervisor (and so the VM) out of reach of the
    // terminal's Ctrl-C aimed at the user's program.
    smolvm_sys::process::new_session(&mut command);
    let mut child = command.spawn().map_err(|e| Error::StartFailed {
        vm_id: vm_id.into(),
        reason: format!("cannot run {}: {e}", launcher.program.display()),
    })?;
    let owner_pipe = child.stdin.take();
    let mut line = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    let read = BufReader::new(stdout).read_line(&mut line);
    let ready: Option<ReadyLine> = serde_json::from_str(line.trim()).ok();
    match (read, ready) {
        (Ok(_), Some(ready)) if ready.ok => Ok(Started {
            child,
            owner_pipe,
            ready,
        }),
        (_, ready) => {
            let _ = child.kill();
            let _ = child.wait();
            let reason = ready.and_then(|r| r.error).unwrap_or_else(|| {
                format!(
                    "the supervisor exited without reporting: {}",
                    crate::contract::log_tail(&paths.supervisor_log())
                )
            });
            Err(Error::StartFailed {
                vm_id: vm_id.into(),
                reason,
            })
        }
    }
}
