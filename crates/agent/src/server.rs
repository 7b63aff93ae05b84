//! The frame loop: reads requests from the host and dispatches them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Write};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use smolvm_protocol::{
    read_frame, AgentInfo, ErrorKind, Frame, FrameKind, Request, Response, PROTOCOL_VERSION,
};

use crate::port::PortReader;
use crate::reaper::Reaper;
use crate::{env, exec, sys};

/// What the host can still reach of a running command.
pub struct ExecControl {
    /// Process group of the command (its shell's pid).
    pub pgid: libc::pid_t,
    /// Feeds the command's stdin; `None` once closed or when stdin is `/dev/null`.
    pub stdin: Option<Sender<Vec<u8>>>,
}

/// State shared by the frame loop and the workers.
pub struct Shared {
    writer: Mutex<File>,
    /// Collects exit statuses.
    pub reaper: Reaper,
    /// Running commands by request id.
    pub execs: Mutex<HashMap<u64, ExecControl>>,
    /// Serialises read-modify-write of the managed environment file.
    pub env_lock: Mutex<()>,
}

impl Shared {
    /// Sends one frame; a failure means the host is gone, which the frame loop notices.
    pub fn send(&self, frame: &Frame) {
        let Ok(bytes) = frame.encode() else { return };
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writer.write_all(&bytes);
    }

    /// Sends the final response to request `id`.
    pub fn respond(&self, id: u64, response: &Response) {
        if let Ok(frame) = Frame::response(id, response) {
            self.send(&frame);
        }
    }
}

const CAPABILITIES: &[&str] = &[
    "exec", "env", "signal", "stdin", "echo", "shutdown", "clock",
];

/// Serves the host until the port fails for good or a shutdown is requested.
pub fn serve(port: File, reaper: Reaper) {
    let writer = match port.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("smolvm-agent: cannot duplicate the port: {e}");
            return;
        }
    };
    let shared = Arc::new(Shared {
        writer: Mutex::new(writer),
        reaper,
        execs: Mutex::new(HashMap::new()),
        env_lock: Mutex::new(()),
    });
    let mut reader = BufReader::with_capacity(256 << 10, PortReader(port));
    loop {
        let frame = match read_frame(&mut reader) {
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(e) => {
                // A framing error leaves the stream position unknown; there is no way to
                // resynchronise, so report it on the console and stop serving.
                eprintln!("smolvm-agent: channel error: {e}");
                return;
            }
        };
        match frame.kind {
            FrameKind::Request => match frame.to_request() {
                Ok(Request::Shutdown) => {
                    shared.respond(frame.id, &Response::Ok);
                    shutdown();
                }
                Ok(request) => dispatch(&shared, frame.id, request),
                Err(e) => shared.respond(
                    frame.id,
                    &Response::error(ErrorKind::InvalidRequest, e.to_string()),
                ),
            },
            FrameKind::Echo => shared.send(&frame),
            FrameKind::Stdin => exec::feed_stdin(&shared, frame.id, frame.payload),
            FrameKind::Signal => {
                if let Ok(signal) = frame.to_signal() {
                    exec::signal(&shared, frame.id, signal);
                }
            }
            FrameKind::Response | FrameKind::Stdout | FrameKind::Stderr => {
                eprintln!(
                    "smolvm-agent: ignoring unexpected {:?} frame from the host",
                    frame.kind
                );
            }
        }
    }
}

fn dispatch(shared: &Arc<Shared>, id: u64, request: Request) {
    match request {
        Request::Hello {
            protocol,
            host_time_ns,
        } => {
            if let Some(ns) = host_time_ns {
                if let Err(e) = sys::set_clock(ns) {
                    eprintln!("smolvm-agent: cannot set the clock: {e}");
                }
            }
            let info = AgentInfo {
                protocol: PROTOCOL_VERSION,
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
                uptime_ms: sys::uptime_ms(),
            };
            if protocol != PROTOCOL_VERSION {
                let message =
                    format!("host speaks protocol {protocol}, agent speaks {PROTOCOL_VERSION}");
                shared.respond(id, &Response::error(ErrorKind::InvalidRequest, message));
            } else {
                shared.respond(id, &Response::Hello(info));
            }
        }
        Request::Exec(exec) => {
            let worker = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name(format!("exec-{id}"))
                .spawn(move || exec::run(&worker, id, exec));
            if let Err(e) = spawned {
                let message = format!("cannot start a worker thread: {e}");
                shared.respond(id, &Response::error(ErrorKind::Spawn, message));
            }
        }
        // Environment operations are short file operations: answering them inline saves a
        // thread spawn per call, and they are serialised by the file lock anyway.
        Request::EnvSet { vars, merge } => shared.respond(id, &env::set(shared, vars, merge)),
        Request::EnvList => shared.respond(id, &env::list(shared)),
        Request::EnvUnset { keys } => shared.respond(id, &env::unset(shared, keys)),
        Request::Shutdown => unreachable!("handled by the frame loop"),
        Request::Status | Request::Stop { .. } | Request::ChannelBench { .. } => {
            let message = format!(
                "{} is answered by the host supervisor, not the agent",
                request.log_summary()
            );
            shared.respond(id, &Response::error(ErrorKind::InvalidRequest, message));
        }
    }
}

/// Ends every process, flushes the filesystems and resets the machine.
fn shutdown() -> ! {
    if std::process::id() != 1 {
        // Run by hand outside a guest: never signal the host's processes.
        std::process::exit(0);
    }
    // SAFETY: kill with pid -1 signals every process except PID 1 itself.
    unsafe { libc::kill(-1, libc::SIGTERM) };
    std::thread::sleep(std::time::Duration::from_millis(20));
    // SAFETY: as above.
    unsafe { libc::kill(-1, libc::SIGKILL) };
    sys::reboot_now()
}
