//! Exit-status collection for PID 1.
//!
//! PID 1 inherits every orphan, so someone must `wait` for any child at all; but the command
//! workers also need the statuses of their own children. One reaper thread owns all waiting:
//! it peeks at an exited child with `WNOWAIT`, then under the registry lock either hands the
//! status to the worker that registered that pid (and wakes it through a pipe it can poll) or
//! simply reaps an orphan. Workers spawn while holding the same lock, so a child can never be
//! reaped before its worker has registered it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::sys::check;

/// A worker's claim on a child: where its status goes once it exits.
struct Claim {
    status: Option<libc::c_int>,
    notify: File,
}

/// Collects the exit status of every child of the process: the commands' own, which go to
/// the worker that started each, and any orphan's (PID 1 inherits them all; in host mode the
/// agent is a child subreaper, so it inherits its commands' orphans).
///
/// It waits with `waitid(P_ALL)`, so it reaps every child the process has: start it only in
/// a process of its own (the agent binary), never inside a test harness or another program.
#[derive(Clone)]
pub struct Reaper {
    claims: Arc<Mutex<HashMap<libc::pid_t, Claim>>>,
}

/// Held while spawning: proves the registry is locked, so [`SpawnGuard::claim`] can be called for the
/// new child before the reaper can look at it.
pub(crate) struct SpawnGuard<'a> {
    claims: MutexGuard<'a, HashMap<libc::pid_t, Claim>>,
}

impl SpawnGuard<'_> {
    /// Registers `pid`; its exit makes the returned fd readable.
    pub(crate) fn claim(&mut self, pid: libc::pid_t) -> io::Result<OwnedFd> {
        let (read, write) = pipe()?;
        self.claims.insert(
            pid,
            Claim {
                status: None,
                notify: File::from(write),
            },
        );
        Ok(read)
    }
}

impl Reaper {
    /// Blocks SIGCHLD in the calling thread (so in every thread created after it) and starts
    /// the reaper thread that consumes it with `sigwait`.
    ///
    /// Call it first, on the main thread, before any other thread exists: a thread started
    /// earlier would have SIGCHLD unblocked, could take the signal in place of the reaper's
    /// `sigwait`, and exits would then go unnoticed (commands that never finish).
    pub fn start() -> Self {
        let reaper = Reaper {
            claims: Arc::new(Mutex::new(HashMap::new())),
        };
        let set = sigchld_set();
        // SAFETY: `set` is an initialised sigset_t.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        let worker = reaper.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || worker.run(set))
            .expect("spawn reaper thread");
        reaper
    }

    /// Locks the registry for a spawn.
    pub(crate) fn lock_for_spawn(&self) -> SpawnGuard<'_> {
        SpawnGuard {
            claims: self.claims.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Takes the exit status of a claimed child once it has exited (`None` while running).
    pub(crate) fn take_status(&self, pid: libc::pid_t) -> Option<libc::c_int> {
        let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
        let status = claims.get(&pid)?.status?;
        claims.remove(&pid);
        Some(status)
    }

    fn run(self, set: libc::sigset_t) {
        loop {
            self.reap_all();
            let mut sig = 0;
            // SAFETY: `set` is initialised and `sig` is writable.
            unsafe { libc::sigwait(&set, &mut sig) };
        }
    }

    fn reap_all(&self) {
        loop {
            // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: `info` is writable; WNOWAIT leaves the child waitable.
            let ret = unsafe {
                libc::waitid(
                    libc::P_ALL,
                    0,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                )
            };
            // SAFETY: waitid filled `info` (or left it zeroed, giving pid 0).
            let pid = unsafe { info.si_pid() };
            if ret != 0 || pid == 0 {
                return;
            }
            let mut claims = self.claims.lock().unwrap_or_else(|e| e.into_inner());
            let mut status = 0;
            // SAFETY: `status` is writable; the child is known to have exited.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            if let Some(claim) = claims.get_mut(&pid) {
                claim.status = Some(status);
                let _ = claim.notify.write_all(&[1]);
            }
        }
    }
}

fn sigchld_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        set
    }
}

/// A close-on-exec pipe.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 returned two fresh descriptors that we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
