//! Host helpers shared by every SmolVM crate, so that each is written once: private and
//! atomic files, locks, free space and unmounting ([`fs`]), building a tree through directory
//! descriptors without following links ([`dir`]), pipes ([`pipe`]), other processes and this
//! one ([`process`]), socket peers ([`socket`]), the terminal ([`term`]), standard streams
//! ([`stdio`]) and randomness ([`random`]).
//!
//! This is the one crate of the host side that calls `libc` with `unsafe`: every call is
//! wrapped here in a safe function with its `// SAFETY:` argument, so that the SDK and the
//! CLI can `#![forbid(unsafe_code)]`.

pub mod dir;
pub mod fs;
pub mod pipe;
pub mod process;
pub mod random;
pub mod socket;
pub mod stdio;
pub mod term;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;

/// `s` as a C string; a NUL inside it is an `InvalidInput` error.
fn c_string(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a path"))
}

/// A libc return value: negative means failure, with the reason in `errno`.
fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
