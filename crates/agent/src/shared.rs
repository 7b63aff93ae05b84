//! What the frame loop and the request workers share: the writer to the host, the requests
//! in flight (their input, output credit and process group) and the agent's options.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use smolvm_protocol::{ErrorKind, Frame, Response};

use crate::flow::OutputWindow;
use crate::options::Options;
use crate::reaper::Reaper;
use crate::sys;

/// What the host can still reach of a request in flight: a running command, or a file being
/// written.
#[derive(Default)]
pub struct ExecControl {
    /// Process group of the command (its shell's pid); 0 before it started, and for files.
    pub pgid: libc::pid_t,
    /// Feeds the command's stdin (or the file's content); `None` once closed. Unbounded as a
    /// queue, bounded in bytes by the host's input window (`INPUT_WINDOW`): the frame loop
    /// never blocks on a request that does not consume its input.
    pub stdin: Option<Sender<Vec<u8>>>,
    /// Bytes of input queued and not yet credited back to the host.
    pub stdin_queued: u64,
    /// The request's output credit.
    pub output: Option<Arc<OutputWindow>>,
    /// The command's terminal, when it runs on one.
    pub pty: Option<Arc<OwnedFd>>,
    /// A terminal size that arrived before the terminal existed.
    pub pending_size: Option<(u16, u16)>,
    /// A command (rather than a file transfer) is behind this request.
    pub is_command: bool,
    /// A signal that arrived before the command had started.
    pub pending_signal: Option<i32>,
}

impl Shared {
    /// Registers request `id` before the frame loop reads the next frame (which may already be
    /// its first stdin chunk, a signal or a credit). Returns the consumer end of its input and
    /// its output window.
    pub fn open_stream(&self, id: u64) -> std::io::Result<(Receiver<Vec<u8>>, Arc<OutputWindow>)> {
        let (tx, rx) = channel();
        let window = Arc::new(OutputWindow::new()?);
        let control = ExecControl {
            stdin: Some(tx),
            output: Some(Arc::clone(&window)),
            ..ExecControl::default()
        };
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, control);
        Ok((rx, window))
    }

    /// Whether request `id` is still registered: a streamed answer (a file being read, a
    /// tree being listed) stops once the host cancelled it with a signal.
    pub fn is_open(&self, id: u64) -> bool {
        self.execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&id)
    }

    /// Forgets request `id`, waking anything waiting for its output credit.
    pub fn close_stream(&self, id: u64) {
        let control = self
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        if let Some(window) = control.and_then(|c| c.output) {
            window.close();
        }
    }

    /// The host consumed `bytes` of request `id`'s output.
    pub fn grant_output(&self, id: u64, bytes: u32) {
        let window = self
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .and_then(|c| c.output.clone());
        if let Some(window) = window {
            window.grant(bytes);
        }
    }

    /// Kills the process group of every command still running.
    pub(crate) fn kill_commands(&self) {
        let groups: Vec<libc::pid_t> = self
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|c| c.pgid)
            .filter(|&pgid| pgid > 0)
            .collect();
        for pgid in groups {
            let _ = sys::kill_group(pgid, libc::SIGKILL);
        }
    }

    /// AgentRequest `id` consumed `bytes` of its input: the host may send that much more.
    pub fn credit_input(&self, id: u64, bytes: usize) {
        if let Some(control) = self
            .execs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&id)
        {
            control.stdin_queued = control.stdin_queued.saturating_sub(bytes as u64);
        }
        self.send(&Frame::credit(id, bytes as u32));
    }
}

/// State shared by the frame loop and the workers.
pub struct Shared {
    pub(crate) writer: Mutex<Box<dyn Write + Send>>,
    /// What the agent may do to the system it runs on.
    pub options: Options,
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
        self.write_encoded(&bytes);
    }

    fn write_encoded(&self, bytes: &[u8]) {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writer.write_all(bytes);
    }

    /// Sends the final response to request `id`. An answer that cannot be encoded or is
    /// over the frame limit is replaced by an error saying so: never dropped silently, which
    /// would leave the host waiting for an answer that never comes.
    pub fn respond(&self, id: u64, response: &Response) {
        match Frame::response(id, response).and_then(|frame| frame.encode()) {
            Ok(bytes) => self.write_encoded(&bytes),
            Err(e) => {
                let error = Response::error(
                    ErrorKind::Internal,
                    format!("the agent's answer could not be sent: {e}"),
                );
                if let Ok(frame) = Frame::response(id, &error) {
                    self.send(&frame);
                }
            }
        }
    }
}
