//! `smolvm shell NAME` and `smolvm exec -it`: a command on a terminal in the guest, wired to
//! this terminal in raw mode (window size followed, Ctrl-C typed through to the guest).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Result;
use smolvm::process::{Event, SpawnOptions};
use smolvm::protocol::TtySize;
use smolvm::{RunOptions, SmolVm};

/// Puts the local terminal in raw mode and restores it when dropped (also on error paths).
struct RawMode {
    saved: Option<libc::termios>,
}

impl RawMode {
    fn enable() -> Self {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with valid pointers.
        unsafe {
            if libc::isatty(0) != 1 {
                return Self { saved: None };
            }
            let mut saved: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut saved) != 0 {
                return Self { saved: None };
            }
            let mut raw = saved;
            libc::cfmakeraw(&mut raw);
            libc::tcsetattr(0, libc::TCSANOW, &raw);
            Self { saved: Some(saved) }
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            // SAFETY: restores the settings read in `enable`.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}

/// The local terminal's size (80x24 when stdout is not a terminal).
fn terminal_size() -> TtySize {
    // SAFETY: TIOCGWINSZ writes a winsize into the valid pointer.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0 {
            return TtySize {
                rows: ws.ws_row,
                cols: ws.ws_col,
            };
        }
    }
    TtySize { rows: 24, cols: 80 }
}

/// Runs `command` with this process's stdin passed through; on a guest terminal attached to
/// this one (raw mode, resizes followed) when `tty`. Returns its exit code.
pub fn interactive(vm: &SmolVm, command: &str, run: &RunOptions, tty: bool) -> Result<i32> {
    let mut size = terminal_size();
    let options = SpawnOptions {
        shell: run.shell,
        env: run.env.clone(),
        cwd: run.cwd.clone(),
        timeout: run.timeout,
        stdin: true,
        tty: tty.then_some(size),
    };
    let mut process = vm.spawn(command, &options)?;
    let _raw = tty.then(RawMode::enable);
    let input = process.input();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = input.close_stdin();
                    break;
                }
                Ok(n) => {
                    if input.write_stdin(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let resizer = process.input();
    let mut stdout = std::io::stdout().lock();
    loop {
        match process.next_event(Some(Duration::from_millis(250)))? {
            Some(Event::Stdout(bytes)) => {
                stdout.write_all(&bytes)?;
                stdout.flush()?;
            }
            Some(Event::Stderr(bytes)) => {
                let _ = std::io::stderr().write_all(&bytes);
            }
            Some(Event::Exit(code)) => return Ok(code),
            None => {
                // Follow window resizes by looking rather than by signal handler.
                let now = terminal_size();
                if tty && now != size {
                    size = now;
                    let _ = resizer.resize(size.rows, size.cols);
                }
            }
        }
    }
}

pub fn shell(name: &str) -> Result<i32> {
    let vm = SmolVm::attach(name)?;
    let command = "if [ -x /bin/bash ]; then exec /bin/bash -l; else exec /bin/sh -l; fi";
    interactive(
        &vm,
        command,
        &RunOptions {
            timeout: None,
            ..RunOptions::raw()
        },
        true,
    )
}
