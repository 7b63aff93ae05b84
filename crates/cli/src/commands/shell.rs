//! `smolvm shell NAME` and `smolvm exec -it`: a command on a terminal in the guest, wired to
//! this terminal in raw mode (window size followed, Ctrl-C typed through to the guest).

use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Result;
use smolvm::process::{Event, SpawnOptions};
use smolvm::protocol::TtySize;
use smolvm::{RunOptions, SmolVm};

/// The local terminal's size (80x24 when stdout is not a terminal).
fn terminal_size() -> TtySize {
    smolvm_sys::term::window_size(&std::io::stdout()).map_or(
        TtySize { rows: 24, cols: 80 },
        |(rows, cols)| TtySize { rows, cols },
    )
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
    // Raw mode until dropped (also on error paths).
    let _raw = tty.then(|| smolvm_sys::term::RawMode::enable(std::io::stdin()));
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
