//! Running one command: spawn (on pipes or a terminal), stream its output, feed its stdin,
//! enforce its timeout, report its exit.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smolvm_protocol::{
    ErrorKind, ExecRequest, ExitStatus, Frame, FrameKind, Response, Shell, TtySize, INPUT_WINDOW,
    MAX_PAYLOAD,
};

use crate::flow::OutputWindow;
use crate::options::Options;
use crate::shared::Shared;
use crate::sys;

/// Largest output chunk sent in one frame.
const CHUNK: usize = 64 << 10;
/// After the command's shell exits, how long to keep collecting output still held open by
/// processes it left in the background (`cmd &`). Without a bound such a command would never
/// return, as with `ssh host 'sleep 100 &'`.
const DRAIN_GRACE: Duration = Duration::from_millis(100);
/// What "closing stdin" means on a terminal: the EOF character (Ctrl-D).
const TTY_EOF: u8 = 0x04;

/// The environment every command starts from, before the request's own variables (in host
/// mode `HOME` is the state dir's `home/`, see [`Options::home`]).
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

type ExecError = (ErrorKind, String);

/// Runs `request` to completion, streaming output frames and then the final `Exited` response.
/// `stdin` carries the host's stdin chunks when the request asked for stdin or a terminal.
pub fn run(
    shared: &Arc<Shared>,
    id: u64,
    request: ExecRequest,
    stdin: Option<Receiver<Vec<u8>>>,
    window: Arc<OutputWindow>,
) {
    let response = match spawn_and_stream(shared, id, &request, stdin, &window) {
        Ok(status) => Response::Exited(status),
        Err((kind, message)) => Response::error(kind, message),
    };
    shared.close_stream(id);
    shared.respond(id, &response);
}

/// A pseudo-terminal pair, both ends close-on-exec.
fn open_pty(size: TtySize) -> io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (0, 0);
    let winsize = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: the out-pointers are valid; a null name and termios are allowed.
    sys::check(unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &winsize,
        )
    })?;
    // SAFETY: openpty returned two fresh descriptors that we now own.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    for fd in [&master, &slave] {
        // SAFETY: fcntl on a descriptor we own.
        sys::check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) })?;
    }
    Ok((master, slave))
}

/// The command, and the terminal's master end when it runs on one.
fn build_command(
    request: &ExecRequest,
    options: &Options,
) -> Result<(Command, Option<OwnedFd>), ExecError> {
    let mut command = Command::new("/bin/sh");
    command.arg(match request.shell {
        Shell::Login => "-lc",
        Shell::Raw => "-c",
    });
    command.arg(&request.command);
    command.env_clear();
    command.envs(BASE_ENV.iter().copied());
    if options.is_host_mode() {
        command.env("HOME", options.home());
    }
    if request.tty.is_some() {
        command.env("TERM", "xterm-256color");
    }
    command.envs(&request.env);
    let cwd = request.cwd.as_deref().map_or(options.home(), Path::new);
    if cwd.is_dir() {
        command.current_dir(cwd);
    } else if request.cwd.is_some() {
        return Err((
            ErrorKind::NotFound,
            format!(
                "working directory {} does not exist in the guest",
                cwd.display()
            ),
        ));
    } else {
        command.current_dir("/");
    }
    let io_err = |e: io::Error| {
        (
            ErrorKind::Io,
            format!("cannot set up the command's terminal: {e}"),
        )
    };
    let master = match request.tty {
        Some(size) => {
            let (master, slave) = open_pty(size).map_err(io_err)?;
            command.stdin(Stdio::from(slave.try_clone().map_err(io_err)?));
            command.stdout(Stdio::from(slave.try_clone().map_err(io_err)?));
            command.stderr(Stdio::from(slave));
            // SAFETY: setsid and ioctl are async-signal-safe. The shell leads a new session
            // whose controlling terminal is the pty, so Ctrl-C typed on it reaches the command.
            unsafe {
                command.pre_exec(|| {
                    sys::check(libc::setsid())?;
                    sys::check(libc::ioctl(0, libc::TIOCSCTTY, 0)).map(|_| ())
                });
            }
            Some(master)
        }
        None => {
            command.stdin(if request.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            });
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
            // SAFETY: setsid is async-signal-safe; the shell leads a new process group so that
            // a timeout or signal reaches everything the command started.
            unsafe {
                command.pre_exec(|| sys::check(libc::setsid()).map(|_| ()));
            }
            None
        }
    };
    Ok((command, master))
}

fn spawn_and_stream(
    shared: &Arc<Shared>,
    id: u64,
    request: &ExecRequest,
    stdin: Option<Receiver<Vec<u8>>>,
    window: &OutputWindow,
) -> Result<ExitStatus, ExecError> {
    let (mut command, master) = build_command(request, &shared.options)?;
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
    // The command holds the terminal's slave end; the agent must not, or the master would
    // never see the end of output.
    drop(command);
    let pid = child.id() as libc::pid_t;
    let io_err = |e: io::Error| {
        (
            ErrorKind::Io,
            format!("cannot set up the command's I/O: {e}"),
        )
    };
    let (outputs, stdin_target, tty_eof) = match master {
        Some(master) => {
            let master = Arc::new(master);
            let reader = File::from(master.try_clone().map_err(io_err)?);
            let writer = File::from(master.try_clone().map_err(io_err)?);
            let pending = shared
                .execs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&id)
                .and_then(|control| {
                    control.pty = Some(Arc::clone(&master));
                    control.pending_size.take()
                });
            if let Some((rows, cols)) = pending {
                set_size(&master, rows, cols);
            }
            (vec![(reader, FrameKind::Stdout)], Some(writer), true)
        }
        None => {
            let stdout = File::from(OwnedFd::from(child.stdout.take().expect("piped stdout")));
            let stderr = File::from(OwnedFd::from(child.stderr.take().expect("piped stderr")));
            let pipe = child.stdin.take().map(|p| File::from(OwnedFd::from(p)));
            (
                vec![(stdout, FrameKind::Stdout), (stderr, FrameKind::Stderr)],
                pipe,
                false,
            )
        }
    };
    let early_signal = shared
        .execs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&id)
        .and_then(|control| {
            control.pgid = pid;
            control.pending_signal.take()
        });
    if let Some(signal) = early_signal {
        let _ = sys::kill_group(pid, signal);
    }
    if let (Some(target), Some(chunks)) = (stdin_target, stdin) {
        start_stdin_writer(target, chunks, tty_eof, Arc::clone(shared), id);
    }
    let deadline = request
        .timeout_ms
        .map(|ms| started + Duration::from_millis(ms));
    let mut pump = Pump::new(outputs, exit_fd)?;
    let mut timed_out = false;
    let mut status = None;
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let blocked = !window.open_or_closed();
        let wake_at = if status.is_some() {
            // The drain grace only counts while output can flow.
            if blocked {
                None
            } else {
                drain_until
            }
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
            .poll(timeout_ms, window.event_fd(), !blocked)
            .map_err(|e| (ErrorKind::Io, format!("poll: {e}")))?;
        if events.credit {
            window.clear_event();
            if let (Some(until), true) = (drain_until.as_mut(), blocked) {
                *until += now.elapsed();
            }
        }
        if events.timed_out {
            if status.is_some() {
                break;
            }
            timed_out = true;
            let _ = sys::kill_group(pid, libc::SIGKILL);
            continue;
        }
        pump.forward_output(shared, id, window);
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
    /// Output credit arrived.
    credit: bool,
}

/// Non-blocking reader over the command's outputs and its exit notification.
struct Pump {
    outputs: Vec<(Option<File>, FrameKind)>,
    exit_fd: Option<OwnedFd>,
    buf: Vec<u8>,
}

impl Pump {
    fn new(outputs: Vec<(File, FrameKind)>, exit_fd: OwnedFd) -> Result<Self, ExecError> {
        for (file, _) in &outputs {
            sys::set_nonblocking(file.as_raw_fd())
                .map_err(|e| (ErrorKind::Io, format!("fcntl: {e}")))?;
        }
        Ok(Self {
            outputs: outputs.into_iter().map(|(f, k)| (Some(f), k)).collect(),
            exit_fd: Some(exit_fd),
            buf: vec![0; CHUNK],
        })
    }

    fn has_output_open(&self) -> bool {
        self.outputs.iter().any(|(f, _)| f.is_some())
    }

    /// Waits for output (only when `can_send`: otherwise the command's pipe fills and it
    /// waits, which is the point), its exit, or credit on `credit_fd`.
    fn poll(&mut self, timeout_ms: i32, credit_fd: i32, can_send: bool) -> io::Result<PollEvents> {
        let mut fds = Vec::with_capacity(4);
        if can_send {
            for file in self.outputs.iter().filter_map(|(f, _)| f.as_ref()) {
                fds.push(libc::pollfd {
                    fd: file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        fds.push(libc::pollfd {
            fd: credit_fd,
            events: libc::POLLIN,
            revents: 0,
        });
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
        let credit = fds.iter().any(|p| p.fd == credit_fd && p.revents != 0);
        Ok(PollEvents {
            timed_out: ret == 0,
            exited,
            credit,
        })
    }

    /// Reads whatever is available on each open output and sends it; closes outputs at EOF
    /// (or EIO, which is how a terminal's master reports that the last slave closed).
    /// Sends at most what `window` allows.
    fn forward_output(&mut self, shared: &Shared, id: u64, window: &OutputWindow) {
        for (slot, kind) in self.outputs.iter_mut() {
            let Some(file) = slot else { continue };
            loop {
                let allowed = window.try_take(CHUNK);
                if allowed == 0 {
                    return;
                }
                match file.read(&mut self.buf[..allowed]) {
                    Ok(0) => {
                        window.give_back(allowed);
                        *slot = None;
                        break;
                    }
                    Ok(n) => {
                        // Give back what the read did not use.
                        if n < allowed {
                            window.give_back(allowed - n);
                        }
                        shared.send(&Frame::data(id, *kind, self.buf[..n].to_vec()))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        window.give_back(allowed);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                        window.give_back(allowed);
                    }
                    Err(_) => {
                        window.give_back(allowed);
                        *slot = None;
                        break;
                    }
                }
            }
        }
    }
}

/// Writes all of `data` to `fd`, waiting whenever it is full. The descriptor may be
/// non-blocking: a terminal's master shares its file status flags with the reader's copy.
fn write_all_waiting(file: &File, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is a valid buffer of the given length.
        let n = unsafe { libc::write(file.as_raw_fd(), data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            data = &data[n as usize..];
            continue;
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd: file.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 1000) };
            }
            _ => return Err(err),
        }
    }
    Ok(())
}

/// Feeds stdin chunks to the command on a thread of its own, so that a command that does not
/// read its stdin can never stall the frame loop. An empty chunk (or the host going away)
/// closes stdin; on a terminal it types Ctrl-D instead.
fn start_stdin_writer(
    target: File,
    chunks: Receiver<Vec<u8>>,
    tty: bool,
    shared: Arc<Shared>,
    id: u64,
) {
    std::thread::spawn(move || {
        while let Ok(chunk) = chunks.recv() {
            if chunk.is_empty() {
                if tty {
                    let _ = write_all_waiting(&target, &[TTY_EOF]);
                    continue;
                }
                break;
            }
            if write_all_waiting(&target, &chunk).is_err() {
                break;
            }
            // Consumed: the host may send as much again.
            shared.credit_input(id, chunk.len());
        }
    });
}

/// Routes a `Stdin` frame to the request it belongs to. Never blocks: the queue is bounded in
/// bytes by the host's input window, which the consumer credits back as it writes.
pub fn feed_stdin(shared: &Shared, id: u64, data: Vec<u8>) {
    let sender = {
        let mut execs = shared.execs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(control) = execs.get_mut(&id) else {
            return;
        };
        control.stdin_queued += data.len() as u64;
        if control.stdin_queued > u64::from(INPUT_WINDOW) + MAX_PAYLOAD as u64 {
            // The host ignored its input window: refuse the rest rather than buffer it.
            eprintln!("smolvm-agent: request {id} sent input beyond its window; dropping it");
            control.stdin = None;
            return;
        }
        if data.is_empty() {
            control.stdin.take()
        } else {
            control.stdin.clone()
        }
    };
    if let Some(sender) = sender {
        let _ = sender.send(data);
    }
}

/// Delivers `signal` to the process group of request `id`'s command. For a request without a
/// process (a file being written), any signal cancels it.
pub fn signal(shared: &Shared, id: u64, signal: i32) {
    let pgid = {
        let mut execs = shared.execs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(control) = execs.get_mut(&id) else {
            return;
        };
        if control.pgid == 0 && control.is_command {
            // Not started yet: deliver it as soon as it is.
            control.pending_signal = Some(signal);
            return;
        }
        control.pgid
    };
    if pgid > 0 {
        let _ = sys::kill_group(pgid, signal);
    } else {
        shared.close_stream(id);
    }
}

/// Resizes request `id`'s terminal.
pub fn resize(shared: &Shared, id: u64, rows: u16, cols: u16) {
    let pty = {
        let mut execs = shared.execs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(control) = execs.get_mut(&id) else {
            return;
        };
        if control.pty.is_none() {
            control.pending_size = Some((rows, cols));
        }
        control.pty.clone()
    };
    if let Some(pty) = pty {
        set_size(&pty, rows, cols);
    }
}

fn set_size(pty: &OwnedFd, rows: u16, cols: u16) {
    let winsize = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a valid winsize from the pointer.
    unsafe { libc::ioctl(pty.as_raw_fd(), libc::TIOCSWINSZ, &winsize) };
}
