//! `smolvm._native.Process`: a command running in a VM, read event by event.
//!
//! Waiting for the next event releases the GIL and wakes every [`POLL`] to run Python's
//! signal handlers, so a Ctrl-C is seen at once: the command is then killed in the guest and
//! the `KeyboardInterrupt` raised.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyBrokenPipeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use smolvm::process::{Event, Process, ProcessInput};

use crate::errors;
use crate::wait::POLL;

/// How long an interrupted command is given to report that it was killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Where a process is in its life.
struct State {
    /// The exit event was read (or reading failed): no more events.
    finished: bool,
    /// The exit code, once read.
    exit_code: Option<i32>,
    /// `close_stdin` was called.
    stdin_closed: bool,
}

/// A command started by `Vm.spawn`. Dropping it while the command still runs kills the
/// command.
#[pyclass(frozen, module = "smolvm._native", name = "Process")]
pub struct NativeProcess {
    process: Mutex<Process>,
    input: ProcessInput,
    command: String,
    stdin: bool,
    state: Mutex<State>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl NativeProcess {
    pub fn new(process: Process, command: &str, stdin: bool) -> Self {
        Self {
            input: process.input(),
            process: Mutex::new(process),
            command: command.to_string(),
            stdin,
            state: Mutex::new(State {
                finished: false,
                exit_code: None,
                stdin_closed: !stdin,
            }),
        }
    }

    fn finished(&self) -> bool {
        lock(&self.state).finished
    }

    /// Records the end of the command (`code` when known).
    fn finish(&self, code: Option<i32>) {
        let mut state = lock(&self.state);
        state.finished = true;
        if code.is_some() {
            state.exit_code = code;
        }
    }

    /// One wait of at most `wait` for the next event, without the GIL; `Ok(None)` when none
    /// came (or the command already ended).
    fn poll(&self, py: Python<'_>, wait: Duration) -> smolvm::Result<Option<Event>> {
        py.detach(|| {
            let mut process = lock(&self.process);
            if self.finished() {
                return Ok(None);
            }
            process.next_event(Some(wait))
        })
    }

    /// Kills the command and waits (a bounded time) for its exit code, dropping any output.
    fn kill_and_reap(&self, py: Python<'_>) {
        if self.finished() {
            return;
        }
        let _ = self.input.signal(SIGKILL);
        let deadline = Instant::now() + KILL_GRACE;
        while Instant::now() < deadline {
            match self.poll(py, POLL) {
                Ok(Some(Event::Exit(code))) => return self.finish(Some(code)),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        self.finish(None);
    }
}

/// `SIGKILL` (the same number on every Linux architecture).
const SIGKILL: i32 = 9;

#[pymethods]
impl NativeProcess {
    /// The command line.
    #[getter]
    fn command(&self) -> &str {
        &self.command
    }

    /// The exit code once the exit was read, else `None`.
    #[getter]
    fn exit_code(&self) -> Option<i32> {
        lock(&self.state).exit_code
    }

    /// Whether the command's end was read (no more events will come).
    #[getter(finished)]
    fn is_finished(&self) -> bool {
        self.finished()
    }

    /// The next piece of output as `("stdout" | "stderr", bytes)`, waiting as long as it
    /// takes; `None` once the command has exited (its code is then in `exit_code`). Raises
    /// `OperationTimeoutError` when the command ran past its timeout (it was killed). A
    /// Ctrl-C kills the command and raises `KeyboardInterrupt`.
    fn next_event<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(&'static str, Bound<'py, PyBytes>)>> {
        loop {
            if self.finished() {
                return Ok(None);
            }
            match self.poll(py, POLL) {
                Ok(Some(Event::Stdout(data))) => {
                    return Ok(Some(("stdout", PyBytes::new(py, &data))))
                }
                Ok(Some(Event::Stderr(data))) => {
                    return Ok(Some(("stderr", PyBytes::new(py, &data))))
                }
                Ok(Some(Event::Exit(code))) => {
                    self.finish(Some(code));
                    return Ok(None);
                }
                Ok(None) => {}
                Err(e) => {
                    self.finish(None);
                    return Err(errors::to_py(py, e));
                }
            }
            if let Err(interrupt) = py.check_signals() {
                self.kill_and_reap(py);
                return Err(interrupt);
            }
        }
    }

    /// Writes `data` to the command's stdin. Raises `BrokenPipeError` when stdin was not
    /// requested, was closed, or the command has ended.
    fn write_stdin(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        {
            let state = lock(&self.state);
            if !self.stdin {
                return Err(PyBrokenPipeError::new_err(
                    "the command has no stdin to write to; start it with stdin=True",
                ));
            }
            if state.stdin_closed {
                return Err(PyBrokenPipeError::new_err("the command's stdin is closed"));
            }
            if state.finished {
                return Err(PyBrokenPipeError::new_err("the command has exited"));
            }
        }
        let input = &self.input;
        py.detach(|| input.write_stdin(data))
            .map_err(|e| errors::to_py(py, e))
    }

    /// Closes the command's stdin (end of input). Does nothing when it is already closed or
    /// the command has ended.
    fn close_stdin(&self, py: Python<'_>) -> PyResult<()> {
        {
            let mut state = lock(&self.state);
            if state.stdin_closed || state.finished {
                state.stdin_closed = true;
                return Ok(());
            }
            state.stdin_closed = true;
        }
        let input = &self.input;
        py.detach(|| input.close_stdin())
            .map_err(|e| errors::to_py(py, e))
    }

    /// Sends signal number `signum` to the command's whole process group in the guest. Does
    /// nothing once the command has ended.
    fn send_signal(&self, py: Python<'_>, signum: i32) -> PyResult<()> {
        if self.finished() {
            return Ok(());
        }
        let input = &self.input;
        py.detach(|| input.signal(signum))
            .map_err(|e| errors::to_py(py, e))
    }

    /// Kills the command if it still runs and waits (up to 5 s) for its end; the remaining
    /// output is dropped. Does nothing once the command has ended.
    fn close(&self, py: Python<'_>) {
        self.kill_and_reap(py);
    }
}

impl Drop for NativeProcess {
    fn drop(&mut self) {
        let finished = self
            .state
            .get_mut()
            .map(|s| s.finished)
            .unwrap_or_else(|e| e.into_inner().finished);
        if !finished {
            // Nobody will read the rest: stop the command rather than let it run on.
            let _ = self.input.signal(SIGKILL);
        }
    }
}
