//! Sockets: who is at the other end.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// The credentials of a Unix socket's peer, as the kernel recorded them when it connected
/// (or when the pair was made); they do not change if the peer later changes its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCredentials {
    /// The peer's process id (in this process's pid namespace; 0 if it has none there).
    pub pid: i32,
    /// The peer's effective user id.
    pub uid: u32,
    /// The peer's effective group id.
    pub gid: u32,
}

/// The credentials of the peer of the connected Unix socket `socket` (`SO_PEERCRED`).
pub fn peer_credentials(socket: &impl AsFd) -> io::Result<PeerCredentials> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given and outlive the call.
    crate::check(unsafe {
        libc::getsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(PeerCredentials {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn names_this_process_at_both_ends() {
        let (a, b) = UnixStream::pair().unwrap();
        for end in [&a, &b] {
            let peer = peer_credentials(end).unwrap();
            assert_eq!(peer.pid, std::process::id() as i32);
            assert_eq!(peer.uid, crate::process::euid());
            // SAFETY: getegid has no preconditions.
            assert_eq!(peer.gid, unsafe { libc::getegid() });
        }
        // Through a listener too, and not on something that is not a socket.
        let path = std::env::temp_dir().join(format!("smolvm-sys-peer-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let client = UnixStream::connect(&path).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert_eq!(
            peer_credentials(&server).unwrap().pid,
            std::process::id() as i32
        );
        drop(client);
        let _ = std::fs::remove_file(&path);
        let file = std::fs::File::open("/dev/null").unwrap();
        assert_eq!(
            peer_credentials(&file).unwrap_err().raw_os_error(),
            Some(libc::ENOTSOCK)
        );
    }
}
