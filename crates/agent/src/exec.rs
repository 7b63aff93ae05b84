//! Running one command: spawn, stream its output, enforce its timeout, report its exit.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use smolvm_protocol::{ErrorKind, ExecRequest, ExitStatus, Frame, FrameKind, Response, Shell};

use crate::server::{ExecControl, Shared};
use crate::sys;

/// Largest output chunk sent in one frame.
const CHUNK: usize = 64 << 10;
/// After the command's shell exits, how long to keep collecting output still held open by
/// processes it left in the background (`cmd &`). Without a bound such a command would never
/// return, as with `ssh host 'sleep 100 &'`.
const DRAIN_GRACE: Duration = Duration::from_millis(100);

/// The environment every command starts from, before the request's own variables.
const BASE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("USER", "root"),
    ("LOGNAME", "root"),
    ("SHELL", "/bin/sh"),
    ("LANG", "C.UTF-8"),
];

/// Runs `request` to completion, streaming output frames and then the final `Exited` response.
pub fn run(shared: &Shared, id: u64, request: ExecRequest) {
    let response = match spawn_and_stream(shared, id, &request) {
        Ok(status) => Response::Exited(status),
        Err((kind, message)) => Response::error(kind, message),
    };
    shared
        .execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&id);
    shared.respond(id, &response);
}

type ExecError = (ErrorKind, String);

fn build_command(request: &ExecRequest) -> Result<Command, ExecError> {
    let mut command = Command::new("/bin/sh");
    command.arg(match request.shell {
        Shell::Login => "-lc",
        Shell::Raw => "-c",
    });
    command.arg(&request.command);
    command.env_clear();
    command.envs(BASE_ENV.iter().copied());
    command.envs(&request.env);
    let cwd = request.cwd.as_deref().unwrap_or("/root");
    if !std::path::Path::new(cwd).is_dir() {
        if request.cwd.is_some() {
            return Err((
                ErrorKind::NotFound,
                format!("working directory {cwd} does not exist in the guest"),
            ));
        }
        command.current_dir("/");
    } else {
        command.current_dir(cwd);
    }
    command.stdin(if request.stdin {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; it makes the shell the leader of a new process group
    // so that a timeout or signal reaches everything the command started.
    unsafe {
        command.pre_exec(|| sys::check(libc::setsid()).map(|_| ()));
    }
    Ok(command)
}

fn spawn_and_stream(
    shared: &Shared,
    id: u64,
    request: &ExecRequest,
) -> Result<ExitStatus, ExecError> {
    let mut command = build_command(request)?;
    let started = Instant::now();
    let (mut child, exit_fd) = {
        let mut guard = shared.reaper.lock_for_spawn();
        let child = command
            .spawn()
            .map_err(|e| (ErrorKind::Spawn, format!("cannot start /bin/sh: {e}")))?;
        let exit_fd = guard
            .claim(child.id() as libc::pid_t)
            .map_err(|e| (ErrorKind::Io, format!("cannot create a pipe: {e}")))?;
        (child, exit_fd)
    };
    let pid = child.id() as libc::pid_t;
    let stdin = child
        .stdin
        .take()
        .map(|pipe| start_stdin_writer(File::from(OwnedFd::from(pipe))));
    shared
        .execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(id, ExecControl { pgid: pid, stdin });
    let stdout = File::from(OwnedFd::from(child.stdout.take().expect("piped stdout")));
    let stderr = File::from(OwnedFd::from(child.stderr.take().expect("piped stderr")));
    let deadline = request
        .timeout_ms
        .map(|ms| started + Duration::from_millis(ms));
    let mut pump = Pump::new(stdout, stderr, exit_fd)?;
    let mut timed_out = false;
    let mut status = None;
    let mut drain_until = None;
    loop {
        let now = Instant::now();
        let wake_at = if status.is_some() {
            drain_until
        } else if timed_out {
            None
        } else {
            deadline
        };
        if status.is_some() && !pump.has_output_open() {
            break;
        }
        let timeout_ms = wake_at.map_or(-1, |t: Instant| {
            t.saturating_duration_since(now).as_millis() as i32
        });
        let events = pump
            .poll(timeout_ms)
            .map_err(|e| (ErrorKind::Io, format!("poll: {e}")))?;
        if events.timed_out {
            if status.is_some() {
                break;
            }
            timed_out = true;
            let _ = sys::kill_group(pid, libc::SIGKILL);
            continue;
        }
        pump.forward_output(shared, id);
        if events.exited && status.is_none() {
            status = shared.reaper.take_status(pid);
            if status.is_some() {
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
        }
    }
    let guest_micros = started.elapsed().as_micros() as u64;
    let raw = status.unwrap_or(0);
    let (code, signal) = if libc::WIFSIGNALED(raw) {
        (None, Some(libc::WTERMSIG(raw)))
    } else {
        (Some(libc::WEXITSTATUS(raw)), None)
    };
    Ok(ExitStatus {
        code,
        signal,
        timed_out,
        guest_micros,
    })
}

/// What a poll round found.
struct PollEvents {
    timed_out: bool,
    exited: bool,
}

/// Non-blocking reader over the command's stdout, stderr and exit notification.
struct Pump {
    outputs: [(Option<File>, FrameKind); 2],
    exit_fd: Option<OwnedFd>,
    buf: Vec<u8>,
}

impl Pump {
    fn new(stdout: File, stderr: File, exit_fd: OwnedFd) -> Result<Self, ExecError> {
        for fd in [stdout.as_raw_fd(), stderr.as_raw_fd()] {
            sys::set_nonblocking(fd).map_err(|e| (ErrorKind::Io, format!("fcntl: {e}")))?;
        }
        Ok(Self {
            outputs: [
                (Some(stdout), FrameKind::Stdout),
                (Some(stderr), FrameKind::Stderr),
            ],
            exit_fd: Some(exit_fd),
            buf: vec![0; CHUNK],
        })
    }

    fn has_output_open(&self) -> bool {
        self.outputs.iter().any(|(f, _)| f.is_some())
    }

    fn poll(&mut self, timeout_ms: i32) -> io::Result<PollEvents> {
        let mut fds = Vec::with_capacity(3);
        for file in self.outputs.iter().filter_map(|(f, _)| f.as_ref()) {
            fds.push(libc::pollfd {
                fd: file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        if let Some(exit) = &self.exit_fd {
            fds.push(libc::pollfd {
                fd: exit.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        let ret = loop {
            // SAFETY: `fds` is a valid array of pollfd of the given length.
            let ret =
                unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
            if ret >= 0 {
                break ret;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        };
        let exited = match &self.exit_fd {
            Some(exit) => fds
                .iter()
                .any(|p| p.fd == exit.as_raw_fd() && p.revents != 0),
            None => false,
        };
        if exited {
            self.exit_fd = None;
        }
        Ok(PollEvents {
            timed_out: ret == 0,
            exited,
        })
    }

    /// Reads whatever is available on each open output and sends it; closes outputs at EOF.
    fn forward_output(&mut self, shared: &Shared, id: u64) {
        for (slot, kind) in self.outputs.iter_mut() {
            let Some(file) = slot else { continue };
            loop {
                match file.read(&mut self.buf) {
                    Ok(0) => {
                        *slot = None;
                        break;
                    }
                    Ok(n) => shared.send(&Frame::data(id, *kind, self.buf[..n].to_vec())),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        *slot = None;
                        break;
                    }
                }
            }
        }
    }
}

/// Writes stdin chunks on a thread of their own, so a command that does not read its stdin can
/// never stall the frame loop. An empty chunk (or the sender going away) closes stdin.
fn start_stdin_writer(mut pipe: File) -> mpsc::Sender<Vec<u8>> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        while let Ok(chunk) = rx.recv() {
            if chunk.is_empty() || pipe.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    tx
}

/// Routes a `Stdin` frame to the command it belongs to.
pub fn feed_stdin(shared: &Shared, id: u64, data: Vec<u8>) {
    let mut execs = shared.execs.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(control) = execs.get_mut(&id) {
        let close = data.is_empty();
        if let Some(tx) = &control.stdin {
            let _ = tx.send(data);
        }
        if close {
            control.stdin = None;
        }
    }
}

/// Delivers `signal` to the process group of request `id`'s command.
pub fn signal(shared: &Shared, id: u64, signal: i32) {
    let pgid = shared
        .execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&id)
        .map(|c| c.pgid);
    if let Some(pgid) = pgid {
        let _ = sys::kill_group(pgid, signal);
    }
}
