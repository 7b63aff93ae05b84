//! Blocking work that lets go of the GIL yet stays interruptible by Ctrl-C.
//!
//! Python runs signal handlers only on its main thread, and only when that thread holds the
//! GIL. So a long call cannot simply block inside `Python::detach`: a Ctrl-C would wait until
//! the call ends. Instead the work runs on a helper thread while the calling thread waits in
//! slices of [`POLL`], re-attaching between slices to run `Python::check_signals`.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use pyo3::prelude::*;

/// How often the waiting thread looks for pending signals.
pub const POLL: Duration = Duration::from_millis(50);

/// How an interruptible call ended.
pub enum Waited<T> {
    /// The work finished without a signal handler raising.
    Done(T),
    /// A signal handler raised (typically `KeyboardInterrupt`); `interrupt` was called and the
    /// work then ran to its end, producing the value given here.
    Interrupted(PyErr, T),
}

/// Runs `work` on a helper thread with the GIL released, polling for signals every [`POLL`].
/// When a signal handler raises, `interrupt` is called once (e.g. to cancel a command) and the
/// work is awaited to its end, so nothing it borrows outlives the call.
pub fn interruptible<T, W, I>(py: Python<'_>, work: W, interrupt: I) -> Waited<T>
where
    T: Send,
    W: FnOnce() -> T + Send,
    I: FnOnce(),
{
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel();
        scope.spawn(move || {
            // The receiver outlives the thread, so this cannot fail.
            let _ = tx.send(work());
        });
        let mut rx = Some(rx);
        loop {
            let receiver = rx.take().expect("receiver is put back after each slice");
            let (receiver, got) = py.detach(move || {
                let got = receiver.recv_timeout(POLL);
                (receiver, got)
            });
            match got {
                Ok(value) => return Waited::Done(value),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The helper panicked; leaving the scope joins it and re-raises the panic.
                    return resume_panic();
                }
            }
            if let Err(err) = py.check_signals() {
                interrupt();
                return match py.detach(move || receiver.recv()) {
                    Ok(value) => Waited::Interrupted(err, value),
                    Err(_) => resume_panic(),
                };
            }
            rx = Some(receiver);
        }
    })
}

/// Reached only when the helper thread panicked; `thread::scope` re-raises that panic when the
/// scope ends, which PyO3 turns into a `PanicException`.
fn resume_panic<T>() -> T {
    panic!("SmolVM worker thread panicked")
}
