//! The standard streams.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Points the descriptor `target` at `/dev/null` for writing (`dup2`): whatever is written to
/// it afterwards is discarded, and the file it referred to is no longer held through it. The
/// descriptor number stays valid, so its owner may go on using it.
pub fn redirect_to_null(target: &impl AsFd) -> io::Result<()> {
    let null = OpenOptions::new().write(true).open("/dev/null")?;
    // SAFETY: both descriptors are open; dup2 replaces `target` atomically (it is never
    // closed and left free in between), so the number keeps meaning an open descriptor.
    crate::check(unsafe { libc::dup2(null.as_raw_fd(), target.as_fd().as_raw_fd()) }).map(|_| ())
}

/// Points standard output (descriptor 1) at `/dev/null`: a process whose stdout is a pipe
/// can let the reader go away without ever getting `SIGPIPE` or `EPIPE` there.
pub fn stdout_to_null() -> io::Result<()> {
    redirect_to_null(&io::stdout())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn writes_after_a_redirect_are_discarded() {
        let (read, write) = crate::pipe::pipe().unwrap();
        let (mut read, mut write) = (std::fs::File::from(read), std::fs::File::from(write));
        write.write_all(b"before ").unwrap();
        redirect_to_null(&write).unwrap();
        write.write_all(b"after").unwrap();
        drop(write);
        // The pipe's only writer was replaced, so the reader sees end-of-file after "before ".
        let mut got = String::new();
        read.read_to_string(&mut got).unwrap();
        assert_eq!(got, "before ");
    }
}
