//! Streaming commands: output as it arrives, stdin that can be written and closed, signals,
//! and terminals.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smolvm_protocol::{FrameKind, Response, Shell, TtySize};

use crate::client::{Call, Connection};
use crate::error::{Error, Result};
use crate::run::{CappedBuffer, CommandResult};
use crate::vm::SmolVm;

/// Largest stdin chunk sent in one frame.
const STDIN_CHUNK: usize = 256 << 10;

/// How to start a streaming command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpawnOptions {
    /// Login shell (default) or raw shell.
    pub shell: Shell,
    /// Extra variables for this command only.
    pub env: BTreeMap<String, String>,
    /// Working directory in the guest (default `/root`).
    pub cwd: Option<String>,
    /// Kill the command's process group after this long.
    pub timeout: Option<Duration>,
    /// Keep stdin open for [`Process::write_stdin`]; otherwise stdin is `/dev/null`.
    pub stdin: bool,
    /// Run on a pseudo-terminal of this size (implies stdin; stderr is merged into stdout).
    pub tty: Option<TtySize>,
}

/// Something a running command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes written to stdout (or to the terminal).
    Stdout(Vec<u8>),
    /// Bytes written to stderr.
    Stderr(Vec<u8>),
    /// The command ended with this exit code (`128 + N` when killed by signal N).
    Exit(i32),
}

/// A command running in a VM.
pub struct Process {
    call: Call,
    vm_id: String,
    command: String,
    timeout: Option<Duration>,
    finished: bool,
}

impl Process {
    /// The next event; `Ok(None)` when `wait` passed first (`None` waits as long as it takes).
    /// After [`Event::Exit`] there are no more events.
    pub fn next_event(&mut self, wait: Option<Duration>) -> Result<Option<Event>> {
        if self.finished {
            return Ok(None);
        }
        let deadline = wait.map(|w| Instant::now() + w);
        let frame = loop {
            let Some(frame) = self.call.next(deadline)? else {
                return Ok(None);
            };
            if matches!(
                frame.kind,
                FrameKind::Stdout | FrameKind::Stderr | FrameKind::Response
            ) {
                break frame;
            }
        };
        match frame.kind {
            FrameKind::Stdout => Ok(Some(Event::Stdout(frame.payload))),
            FrameKind::Stderr => Ok(Some(Event::Stderr(frame.payload))),
            FrameKind::Response => {
                self.finished = true;
                let response = frame.to_response().map_err(|source| Error::Protocol {
                    vm_id: self.vm_id.clone(),
                    source,
                })?;
                match response {
                    Response::Exited(status) if status.timed_out => Err(Error::Timeout {
                        command: self.command.clone(),
                        timeout: self.timeout.unwrap_or_default(),
                        vm_id: self.vm_id.clone(),
                    }),
                    Response::Exited(status) => Ok(Some(Event::Exit(
                        status
                            .code
                            .unwrap_or_else(|| 128 + status.signal.unwrap_or(0)),
                    ))),
                    Response::Error { kind, message } => Err(Error::Guest {
                        vm_id: self.vm_id.clone(),
                        kind,
                        message,
                    }),
                    other => Err(Error::Guest {
                        vm_id: self.vm_id.clone(),
                        kind: smolvm_protocol::ErrorKind::Internal,
                        message: format!("unexpected answer {other:?}"),
                    }),
                }
            }
            _ => unreachable!("filtered above"),
        }
    }

    /// Writes to the command's stdin (needs [`SpawnOptions::stdin`] or a terminal).
    pub fn write_stdin(&self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(STDIN_CHUNK) {
            self.call.send(FrameKind::Stdin, chunk.to_vec())?;
        }
        Ok(())
    }

    /// Closes the command's stdin (on a terminal: types Ctrl-D).
    pub fn close_stdin(&self) -> Result<()> {
        self.call.send(FrameKind::Stdin, Vec::new())
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to the command's whole process group.
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.call
            .send(FrameKind::Signal, signal.to_le_bytes().to_vec())
    }

    /// Tells the command's terminal its new size.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        self.call.send(
            FrameKind::Resize,
            [rows.to_le_bytes(), cols.to_le_bytes()].concat(),
        )
    }

    /// A handle for writing stdin, signalling and resizing from another thread while this one
    /// reads events.
    pub fn input(&self) -> ProcessInput {
        ProcessInput {
            conn: self.call.connection(),
            id: self.call.id,
        }
    }

    /// Collects the rest of the output and the exit code, keeping at most
    /// [`crate::run::DEFAULT_MAX_OUTPUT`] bytes of each stream (see [`Process::wait_with`]).
    pub fn wait(self) -> Result<CommandResult> {
        self.wait_with(Some(crate::run::DEFAULT_MAX_OUTPUT))
    }

    /// Collects the rest of the output and the exit code, keeping at most `max_output` bytes
    /// of each stream (`None`: everything); the rest is read and dropped and the result's
    /// `*_truncated` flags say so.
    pub fn wait_with(mut self, max_output: Option<usize>) -> Result<CommandResult> {
        let mut stdout = CappedBuffer::new(max_output);
        let mut stderr = CappedBuffer::new(max_output);
        loop {
            match self.next_event(None)? {
                Some(Event::Stdout(b)) => stdout.push(&b),
                Some(Event::Stderr(b)) => stderr.push(&b),
                Some(Event::Exit(exit_code)) => {
                    let (stdout, stdout_truncated) = stdout.finish();
                    let (stderr, stderr_truncated) = stderr.finish();
                    return Ok(CommandResult {
                        exit_code,
                        stdout,
                        stderr,
                        stdout_truncated,
                        stderr_truncated,
                        guest_time: Duration::ZERO,
                    });
                }
                None => {}
            }
        }
    }
}

impl SmolVm {
    /// Starts `command` and returns at once; read its output with [`Process::next_event`].
    pub fn spawn(&self, command: &str, options: &SpawnOptions) -> Result<Process> {
        let run_options = crate::RunOptions {
            shell: options.shell,
            timeout: options.timeout,
            env: options.env.clone(),
            cwd: options.cwd.clone(),
            cancel: None,
            // A spawned process's output goes to its reader, never into a buffer here.
            max_output: None,
        };
        crate::vm::validate_run(command, &run_options)?;
        let conn: Arc<Connection> = self.conn("Cannot run command")?;
        let request = crate::vm::exec_request(command, &run_options, options.stdin, options.tty);
        Ok(Process {
            call: conn.start_request(&request)?,
            vm_id: self.vm_id().to_string(),
            command: command.to_string(),
            timeout: options.timeout,
            finished: false,
        })
    }
}

/// Writes to a running command from another thread (see [`Process::input`]).
#[derive(Clone)]
pub struct ProcessInput {
    conn: Arc<Connection>,
    id: u64,
}

impl ProcessInput {
    fn send(&self, kind: FrameKind, payload: Vec<u8>) -> Result<()> {
        self.conn
            .send_frame(&smolvm_protocol::Frame::data(self.id, kind, payload))
    }

    /// Writes to the command's stdin.
    pub fn write_stdin(&self, data: &[u8]) -> Result<()> {
        for chunk in data.chunks(STDIN_CHUNK) {
            self.send(FrameKind::Stdin, chunk.to_vec())?;
        }
        Ok(())
    }

    /// Closes the command's stdin (on a terminal: types Ctrl-D).
    pub fn close_stdin(&self) -> Result<()> {
        self.send(FrameKind::Stdin, Vec::new())
    }

    /// Sends `signal` to the command's process group.
    pub fn signal(&self, signal: i32) -> Result<()> {
        self.send(FrameKind::Signal, signal.to_le_bytes().to_vec())
    }

    /// Tells the command's terminal its new size.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        self.send(
            FrameKind::Resize,
            [rows.to_le_bytes(), cols.to_le_bytes()].concat(),
        )
    }
}
