//! The frame loop: reads requests from the host and dispatches them.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use smolvm_protocol::{
    read_frame, AgentInfo, AgentRequest, ErrorKind, FrameKind, Response, PROTOCOL_VERSION,
};

use crate::options::Options;
use crate::reaper::Reaper;
use crate::shared::Shared;
use crate::{env, exec, files};

const CAPABILITIES: &[&str] = &[
    "exec", "env", "signal", "stdin", "echo", "shutdown", "clock", "files", "tty",
];
/// Announced on top of the usual capabilities by an agent in host mode, so that the host can tell
/// a test double from a guest.
pub const HOST_MODE_CAPABILITY: &str = "host_mode";

/// Why [`serve`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The host sent `Shutdown`, and was answered.
    Shutdown,
    /// The channel reached its end (the host closed it).
    Closed,
    /// Reading the channel failed, or a frame could not be parsed (the stream position is
    /// then unknown, so serving cannot go on).
    ChannelError,
}

/// Serves the host: reads frames from `reader` and answers on `writer` (whole frames, each in
/// one `write_all`, from many threads under a lock) until the host asks for a shutdown, the
/// channel ends or a frame cannot be parsed. Requests that are not well-formed JSON, or that
/// only the supervisor answers, get an error response and serving goes on.
///
/// `reaper` must have been started with [`Reaper::start`] before any thread of the process
/// (see there). In host mode, every command still running when `serve` returns is killed
/// (its whole process group); in a guest that is left to the caller (PID 1 powers off).
///
/// Returns once the `Shutdown` answer has been written; worker threads may still be running.
pub fn serve<R, W>(reader: R, writer: W, reaper: Reaper, options: &Options) -> Ended
where
    R: Read,
    W: Write + Send + 'static,
{
    let shared = Arc::new(Shared {
        writer: Mutex::new(Box::new(writer)),
        options: options.clone(),
        reaper,
        execs: Mutex::new(HashMap::new()),
        env_lock: Mutex::new(()),
    });
    let ended = frame_loop(&shared, reader);
    if shared.options.is_host_mode() {
        shared.kill_commands();
    }
    ended
}

fn frame_loop(shared: &Arc<Shared>, reader: impl Read) -> Ended {
    let mut reader = BufReader::with_capacity(256 << 10, reader);
    loop {
        let frame = match read_frame(&mut reader) {
            Ok(Some(frame)) => frame,
            // The end of the stream: never seen on the guest's port (its reader waits out
            // disconnections), the host closing the socket in host mode.
            Ok(None) => return Ended::Closed,
            Err(e) => {
                // A framing error leaves the stream position unknown; there is no way to
                // resynchronise, so report it on the console and stop serving.
                eprintln!("smolvm-agent: channel error: {e}");
                return Ended::ChannelError;
            }
        };
        match frame.kind {
            FrameKind::Request => match frame.to_agent_request() {
                Ok(AgentRequest::Shutdown) => {
                    shared.respond(frame.id, &Response::Ok);
                    return Ended::Shutdown;
                }
                Ok(request) => dispatch(shared, frame.id, request),
                Err(e) => shared.respond(
                    frame.id,
                    &Response::error(ErrorKind::InvalidRequest, e.to_string()),
                ),
            },
            FrameKind::Echo => shared.send(&frame),
            FrameKind::Stdin => exec::feed_stdin(shared, frame.id, frame.payload),
            FrameKind::Signal => {
                if let Ok(signal) = frame.to_signal() {
                    exec::signal(shared, frame.id, signal);
                }
            }
            FrameKind::Credit => {
                if let Ok(bytes) = frame.to_credit() {
                    shared.grant_output(frame.id, bytes);
                }
            }
            FrameKind::Resize => {
                if let Ok((rows, cols)) = frame.to_resize() {
                    exec::resize(shared, frame.id, rows, cols);
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

fn dispatch(shared: &Arc<Shared>, id: u64, request: AgentRequest) {
    match request {
        AgentRequest::Hello {
            protocol,
            host_time_ns,
            identity,
        } => {
            if let Some(ns) = host_time_ns {
                shared.options.step_clock(ns);
            }
            if let Some(identity) = &identity {
                shared.options.apply_identity(identity);
            }
            let mut capabilities: Vec<String> =
                CAPABILITIES.iter().map(|c| c.to_string()).collect();
            if shared.options.is_host_mode() {
                capabilities.push(HOST_MODE_CAPABILITY.to_string());
            }
            let info = AgentInfo {
                protocol: PROTOCOL_VERSION,
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                capabilities,
                uptime_ms: shared.options.uptime_ms(),
            };
            if protocol != PROTOCOL_VERSION {
                let message =
                    format!("host speaks protocol {protocol}, agent speaks {PROTOCOL_VERSION}");
                shared.respond(id, &Response::error(ErrorKind::InvalidRequest, message));
            } else {
                shared.respond(id, &Response::Hello(info));
            }
        }
        AgentRequest::Exec(exec) => {
            // Registered now, not when the command has started, so that signals and stdin
            // that follow the request at once find it.
            let (stdin, window) = match shared.open_stream(id) {
                Ok(stream) => stream,
                Err(e) => return shared.respond(id, &stream_failed(&e)),
            };
            let wants_stdin = exec.stdin || exec.tty.is_some();
            if let Some(control) = shared
                .execs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get_mut(&id)
            {
                control.is_command = true;
                if !wants_stdin {
                    control.stdin = None;
                }
            }
            let stdin = wants_stdin.then_some(stdin);
            let worker = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name(format!("exec-{id}"))
                .spawn(move || exec::run(&worker, id, exec, stdin, window));
            if let Err(e) = spawned {
                let message = format!("cannot start a worker thread: {e}");
                shared.respond(id, &Response::error(ErrorKind::Spawn, message));
            }
        }
        // Environment operations are short file operations: answering them inline saves a
        // thread spawn per call, and they are serialised by the file lock anyway.
        AgentRequest::EnvSet { vars, merge } => shared.respond(id, &env::set(shared, vars, merge)),
        AgentRequest::EnvList => shared.respond(id, &env::list(shared)),
        AgentRequest::EnvUnset { keys } => shared.respond(id, &env::unset(shared, keys)),
        AgentRequest::WriteFile {
            path,
            mode,
            parents,
        } => {
            let content = match shared.open_stream(id) {
                Ok((content, _)) => content,
                Err(e) => return shared.respond(id, &stream_failed(&e)),
            };
            let worker = Arc::clone(shared);
            spawn_worker(shared, id, move || {
                files::write_file(&worker, id, &path, mode, parents, content)
            });
        }
        request @ (AgentRequest::ReadFile { .. }
        | AgentRequest::Stat { .. }
        | AgentRequest::MakeDir { .. }
        | AgentRequest::Symlink { .. }
        | AgentRequest::ListTree { .. }) => {
            // Registered so that its output waits for credit and a signal cancels it.
            let window = match shared.open_stream(id) {
                Ok((_, window)) => window,
                Err(e) => return shared.respond(id, &stream_failed(&e)),
            };
            let worker = Arc::clone(shared);
            spawn_worker(shared, id, move || {
                files::handle(&worker, id, request, &window)
            });
        }
        AgentRequest::Shutdown => unreachable!("handled by the frame loop"),
    }
}

/// The answer to a request that could not be registered.
fn stream_failed(e: &std::io::Error) -> Response {
    Response::error(ErrorKind::Io, format!("cannot create an eventfd: {e}"))
}

/// Runs `work` on a thread of its own, answering with an error when no thread can be made.
fn spawn_worker(shared: &Arc<Shared>, id: u64, work: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new()
        .name(format!("req-{id}"))
        .spawn(work)
    {
        shared.close_stream(id);
        shared.respond(
            id,
            &Response::error(
                ErrorKind::Spawn,
                format!("cannot start a worker thread: {e}"),
            ),
        );
    }
}
