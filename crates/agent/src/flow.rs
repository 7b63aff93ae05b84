//! Per-request output flow control: how many more bytes of a request's output the host has
//! room for (see `smolvm_protocol::OUTPUT_WINDOW`). A command whose reader on the host is slow
//! waits here (its pipe then fills and the command blocks), instead of the agent buffering
//! without limit or the channel stalling every other request.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Condvar, Mutex};

use smolvm_protocol::OUTPUT_WINDOW;

/// The output credit of one request.
pub struct OutputWindow {
    /// Bytes the host still has room for; `None` once the request is cancelled.
    available: Mutex<Option<i64>>,
    granted: Condvar,
    /// Readable whenever credit arrived since the last [`OutputWindow::clear_event`], for
    /// poll-based senders.
    event: OwnedFd,
}

impl OutputWindow {
    /// A full initial window.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd with flags only; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            available: Mutex::new(Some(i64::from(OUTPUT_WINDOW))),
            granted: Condvar::new(),
            // SAFETY: eventfd returned a fresh descriptor that we now own.
            event: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<i64>> {
        self.available.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The host consumed `bytes` and has room for them again.
    pub fn grant(&self, bytes: u32) {
        if let Some(available) = self.state().as_mut() {
            *available += i64::from(bytes);
        }
        self.wake();
    }

    /// Returns bytes taken with [`OutputWindow::try_take`] but not sent. No wake-up: the
    /// sender giving them back is the only one waiting for them, and a wake-up would make its
    /// poll return at once (spinning instead of waiting for output).
    pub fn give_back(&self, bytes: usize) {
        if let Some(available) = self.state().as_mut() {
            *available += bytes as i64;
        }
    }

    /// The request ended or was cancelled: wake any sender for good.
    pub fn close(&self) {
        *self.state() = None;
        self.wake();
    }

    fn wake(&self) {
        self.granted.notify_all();
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes from a valid buffer to our eventfd.
        unsafe { libc::write(self.event.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    /// How many bytes may be sent now, at most `want` (0 when the window is exhausted or
    /// closed); those bytes are taken from the window.
    pub fn try_take(&self, want: usize) -> usize {
        match self.state().as_mut() {
            Some(available) if *available > 0 => {
                let n = want.min(*available as usize);
                *available -= n as i64;
                n
            }
            _ => 0,
        }
    }

    /// Waits until some credit is available, then takes up to `want` bytes of it. Returns 0
    /// when the request was cancelled.
    pub fn take(&self, want: usize) -> usize {
        let mut state = self.state();
        loop {
            match state.as_mut() {
                None => return 0,
                Some(available) if *available > 0 => {
                    let n = want.min(*available as usize);
                    *available -= n as i64;
                    return n;
                }
                Some(_) => {
                    state = self.granted.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            }
        }
    }

    /// Waits until exactly `bytes` have been taken (in as many steps as credit arrives);
    /// `false` when the request was cancelled meanwhile.
    pub fn take_exact(&self, bytes: usize) -> bool {
        let mut taken = 0;
        while taken < bytes {
            match self.take(bytes - taken) {
                0 => return false,
                n => taken += n,
            }
        }
        true
    }

    /// Whether credit is available (or the request is closed, so waiting is pointless).
    pub fn open_or_closed(&self) -> bool {
        self.state().is_none_or(|available| available > 0)
    }

    /// The descriptor that becomes readable when credit arrives.
    pub fn event_fd(&self) -> RawFd {
        self.event.as_raw_fd()
    }

    /// Consumes the pending wake-up of [`OutputWindow::event_fd`].
    pub fn clear_event(&self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading 8 bytes into a valid buffer from our non-blocking eventfd.
        unsafe { libc::read(self.event.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn senders_wait_for_credit_and_wake_on_grant_or_close() {
        let window = Arc::new(OutputWindow::new().unwrap());
        assert_eq!(window.try_take(usize::MAX), OUTPUT_WINDOW as usize);
        assert_eq!(window.try_take(1), 0);
        assert!(!window.open_or_closed());
        let waiter = {
            let window = Arc::clone(&window);
            std::thread::spawn(move || window.take(100))
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(!waiter.is_finished());
        window.grant(40);
        assert_eq!(waiter.join().unwrap(), 40);
        window.clear_event();
        let waiter = {
            let window = Arc::clone(&window);
            std::thread::spawn(move || window.take(100))
        };
        std::thread::sleep(Duration::from_millis(20));
        window.close();
        assert_eq!(waiter.join().unwrap(), 0);
        assert!(window.open_or_closed());
    }

    #[test]
    fn unused_credit_goes_back_without_a_wake_up() {
        let window = OutputWindow::new().unwrap();
        let taken = window.try_take(1000);
        window.give_back(taken);
        let mut pfd = libc::pollfd {
            fd: window.event_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, no wait.
        let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
        assert_eq!(ready, 0, "a sender would spin");
        assert_eq!(window.try_take(usize::MAX), OUTPUT_WINDOW as usize);
    }
}
