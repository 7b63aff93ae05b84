//! `printenv [NAME...]`, for guests whose busybox lacks it: the image links
//! `/usr/bin/printenv` to the agent binary.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

/// Prints the values of the named variables (each followed by a newline), or every
/// `NAME=value` when no name is given. Exits 1 when a named variable is not set.
pub fn main() -> ExitCode {
    let names: Vec<_> = std::env::args_os().skip(1).collect();
    let mut out = std::io::stdout().lock();
    let mut missing = false;
    if names.is_empty() {
        for (key, value) in std::env::vars_os() {
            let _ = out.write_all(key.as_bytes());
            let _ = out.write_all(b"=");
            let _ = out.write_all(value.as_bytes());
            let _ = out.write_all(b"\n");
        }
    } else {
        for name in names {
            match std::env::var_os(&name) {
                Some(value) => {
                    let _ = out.write_all(value.as_bytes());
                    let _ = out.write_all(b"\n");
                }
                None => missing = true,
            }
        }
    }
    if out.flush().is_err() || missing {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
