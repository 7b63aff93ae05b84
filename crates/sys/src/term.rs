//! The terminal: raw mode and window size.

use std::os::fd::{AsFd, AsRawFd};

/// A terminal in raw mode (`cfmakeraw`: no echo, no line editing, no signals from typed
/// keys, bytes passed as they come); its previous settings are restored when dropped, also
/// on error paths and unwinding.
pub struct RawMode<F: AsFd> {
    terminal: F,
    saved: libc::termios,
}

impl<F: AsFd> RawMode<F> {
    /// Puts the terminal `terminal` (for instance `std::io::stdin()`) in raw mode; `None`,
    /// changing nothing, when it is not a terminal.
    pub fn enable(terminal: F) -> Option<Self> {
        let fd = terminal.as_fd().as_raw_fd();
        // SAFETY: termios is plain old data, for which all zeroes is a valid value.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: an open descriptor and a writable termios that outlives the call.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only edits the termios it is given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: an open descriptor and a termios that outlives the call. A failure leaves
        // the settings as they were, which dropping the guard then restores harmlessly.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) };
        Some(Self { terminal, saved })
    }
}

impl<F: AsFd> Drop for RawMode<F> {
    fn drop(&mut self) {
        // SAFETY: an open descriptor (owned or borrowed by `self.terminal`) and the settings
        // read from it in `enable`.
        unsafe {
            libc::tcsetattr(
                self.terminal.as_fd().as_raw_fd(),
                libc::TCSANOW,
                &self.saved,
            )
        };
    }
}

/// The size of the terminal `terminal` in character cells, `(rows, columns)`; `None` when it
/// is not a terminal or reports no size (0 rows or columns).
pub fn window_size(terminal: &impl AsFd) -> Option<(u16, u16)> {
    // SAFETY: winsize is plain old data, for which all zeroes is a valid value.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into `size`, which outlives the call.
    let ret = unsafe { libc::ioctl(terminal.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (ret == 0 && size.ws_row > 0 && size.ws_col > 0).then_some((size.ws_row, size.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::{File, OpenOptions};

    /// A new pseudo-terminal: `(controller, terminal)`.
    fn pty() -> (File, File) {
        let controller = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/ptmx")
            .expect("/dev/ptmx");
        let fd = controller.as_raw_fd();
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: a pty controller descriptor; `name` has room for the 128 bytes given.
        unsafe {
            assert_eq!(libc::grantpt(fd), 0);
            assert_eq!(libc::unlockpt(fd), 0);
            assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        }
        // SAFETY: ptsname_r wrote a NUL-terminated name into `name`.
        let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
        let terminal = OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .unwrap();
        (controller, terminal)
    }

    fn settings(terminal: &File) -> libc::termios {
        // SAFETY: plain old data; tcgetattr fills it from an open terminal.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            assert_eq!(libc::tcgetattr(terminal.as_raw_fd(), &mut t), 0);
            t
        }
    }

    #[test]
    fn raw_mode_is_set_and_restored() {
        let (_controller, terminal) = pty();
        let before = settings(&terminal);
        assert_ne!(
            before.c_lflag & libc::ICANON,
            0,
            "a new terminal is canonical"
        );
        let raw = RawMode::enable(&terminal).expect("a terminal");
        let during = settings(&terminal);
        assert_eq!(during.c_lflag & (libc::ICANON | libc::ECHO | libc::ISIG), 0);
        drop(raw);
        let after = settings(&terminal);
        assert_eq!(after.c_lflag, before.c_lflag);
        assert_eq!(after.c_iflag, before.c_iflag);
        assert_eq!(after.c_oflag, before.c_oflag);
        // Not a terminal: nothing to do.
        assert!(RawMode::enable(File::open("/dev/null").unwrap()).is_none());
    }

    #[test]
    fn window_size_is_read_from_the_terminal() {
        let (controller, terminal) = pty();
        let size = libc::winsize {
            ws_row: 42,
            ws_col: 137,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(
            // SAFETY: TIOCSWINSZ reads one winsize from `size`, which outlives the call.
            unsafe { libc::ioctl(controller.as_raw_fd(), libc::TIOCSWINSZ, &size) },
            0
        );
        assert_eq!(window_size(&terminal), Some((42, 137)));
        // A terminal with no size set, and something that is no terminal: None.
        let (_c, unsized_terminal) = pty();
        assert_eq!(window_size(&unsized_terminal), None);
        assert_eq!(window_size(&File::open("/dev/null").unwrap()), None);
    }
}
