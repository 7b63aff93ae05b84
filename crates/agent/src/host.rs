//! Host mode: the agent as an ordinary host process standing in for a VM, so that the
//! supervisor, router, client and SDK paths can be tested without QEMU.
//!
//! ```text
//! smolvm-agent --host-mode --channel-fd FD --state-dir DIR
//! ```
//!
//! - `--host-mode`: required; nothing else selects host mode.
//! - `--channel-fd FD`: an inherited, connected stream socket (one end of a socket pair) that
//!   carries the frames a guest would read from its virtio-serial port. `FD` must be 3 or more.
//!   The agent takes ownership of it and marks it close-on-exec, so commands do not inherit it.
//! - `--state-dir DIR`: where the effects a guest would have on its own machine go instead
//!   (created if missing; see [`Options`] for the layout).
//!
//! The agent serves until the host sends `Shutdown` or closes its end, then kills its
//! commands' process groups and exits: 0 after a shutdown or a clean end of the channel, 1
//! after a channel error, 2 for a bad command line.
//!
//! Host mode is never entered as PID 1: the binary parses no flags there, and
//! [`run_host_mode`] refuses. Commands run as the invoking user, on the host: host mode is a
//! test double, not a sandbox.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::options::Options;
use crate::reaper::Reaper;
use crate::server::{serve, Ended};
use crate::sys;

/// The command line of host mode, for error messages.
pub const USAGE: &str = "usage: smolvm-agent --host-mode --channel-fd FD --state-dir DIR";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// No host-mode flag: the guest path, as PID 1 or run by hand. Other arguments are
    /// ignored (the kernel passes init the command-line words it does not know).
    Guest,
    /// `--host-mode` with its two flags.
    Host(HostArgs),
}

/// The arguments of host mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostArgs {
    /// The inherited channel socket.
    pub channel_fd: RawFd,
    /// The state dir.
    pub state_dir: PathBuf,
}

/// Parses the arguments after the program name. Any of `--host-mode`, `--channel-fd` or
/// `--state-dir` selects host-mode parsing, which is strict: all three are needed, each once,
/// and nothing else is accepted.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, String> {
    let args: Vec<OsString> = args.into_iter().collect();
    let flags = ["--host-mode", "--channel-fd", "--state-dir"];
    if !args.iter().any(|a| flags.iter().any(|f| a == f)) {
        return Ok(Invocation::Guest);
    }
    let (mut host_mode, mut fd, mut state_dir) = (false, None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy().into_owned();
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--host-mode" if !host_mode => host_mode = true,
            "--channel-fd" if fd.is_none() => {
                let text = value(&arg)?;
                let text = text.to_string_lossy();
                match text.parse::<RawFd>() {
                    Ok(n) if n >= 3 => fd = Some(n),
                    _ => return Err(format!("--channel-fd {text}: not a descriptor >= 3")),
                }
            }
            "--state-dir" if state_dir.is_none() => {
                let dir = PathBuf::from(value(&arg)?);
                if dir.as_os_str().is_empty() {
                    return Err("--state-dir cannot be empty".into());
                }
                state_dir = Some(dir);
            }
            other if flags.contains(&other) => return Err(format!("{other} given twice")),
            other => return Err(format!("unexpected argument {other:?} in host mode")),
        }
    }
    match (host_mode, fd, state_dir) {
        (true, Some(channel_fd), Some(state_dir)) => Ok(Invocation::Host(HostArgs {
            channel_fd,
            state_dir,
        })),
        (false, ..) => Err("--channel-fd and --state-dir need --host-mode".into()),
        _ => Err("--host-mode needs --channel-fd and --state-dir".into()),
    }
}

/// The binary's host-mode entry: adopts the channel descriptor, prepares the state dir and
/// runs [`run_host_mode`]. Call it from the main thread before any other thread starts, and
/// only with a descriptor this process owns and nothing else uses (it is closed on return).
pub fn main(args: HostArgs) -> ExitCode {
    if let Err(e) = check_socket(args.channel_fd) {
        eprintln!("smolvm-agent: --channel-fd {}: {e}", args.channel_fd);
        return ExitCode::from(2);
    }
    // SAFETY: the descriptor is open and a socket (checked above); the command line hands it
    // to this process, which adopts it exactly once, here, before any other code could.
    let channel = UnixStream::from(unsafe { OwnedFd::from_raw_fd(args.channel_fd) });
    let options = match Options::host(&args.state_dir) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("smolvm-agent: state dir {}: {e}", args.state_dir.display());
            return ExitCode::from(2);
        }
    };
    run_host_mode(channel, &options)
}

fn check_socket(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: a zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat only writes to `st`; an invalid descriptor is reported as EBADF.
    sys::check(unsafe { libc::fstat(fd, &mut st) })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a socket",
        ));
    }
    Ok(())
}

/// Runs a whole host-mode agent process over `channel`: starts the reaper, serves, and
/// returns the process's exit code once the host sent `Shutdown` (success), closed the
/// channel (success) or broke it (failure). Commands still running then are killed.
///
/// Call it from the main thread of a process of its own (the agent binary), before any other
/// thread starts: it blocks SIGCHLD and reaps every child of the process (see
/// [`Reaper::start`]). It refuses, with a failure, when the process is PID 1, when `options`
/// are not host-mode options, or when the process already has other threads (a test harness,
/// for one).
pub fn run_host_mode(channel: UnixStream, options: &Options) -> ExitCode {
    if std::process::id() == 1 {
        eprintln!("smolvm-agent: host mode cannot run as PID 1");
        return ExitCode::FAILURE;
    }
    if !options.is_host_mode() {
        eprintln!("smolvm-agent: run_host_mode needs host-mode options");
        return ExitCode::FAILURE;
    }
    match thread_count() {
        Some(1) | None => {}
        Some(n) => {
            eprintln!(
                "smolvm-agent: host mode must start before any other thread ({n} threads run)"
            );
            return ExitCode::FAILURE;
        }
    }
    let fd = channel.as_raw_fd();
    // SAFETY: fcntl on a descriptor `channel` owns, with integer arguments.
    let cloexec = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if let Err(e) = sys::check(cloexec) {
        eprintln!("smolvm-agent: channel: {e}");
        return ExitCode::FAILURE;
    }
    // Orphans of the commands come to the agent, as they come to PID 1 in a guest. The
    // attribute is this process's own.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let reaper = Reaper::start();
    let writer = match channel.try_clone() {
        Ok(writer) => writer,
        Err(e) => {
            eprintln!("smolvm-agent: cannot duplicate the channel: {e}");
            return ExitCode::FAILURE;
        }
    };
    match serve(channel, writer, reaper, options) {
        Ended::Shutdown | Ended::Closed => ExitCode::SUCCESS,
        Ended::ChannelError => ExitCode::FAILURE,
    }
}

/// Threads of this process, from `/proc/self/task`.
fn thread_count() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/task").ok()?.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, String> {
        parse_args(args.iter().map(OsString::from))
    }

    #[test]
    fn guest_unless_a_host_flag_is_given() {
        assert_eq!(parse(&[]), Ok(Invocation::Guest));
        // Words the kernel hands to init are ignored, as before.
        assert_eq!(parse(&["ro", "quiet"]), Ok(Invocation::Guest));
    }

    #[test]
    fn host_mode_needs_all_three_flags_and_nothing_else() {
        let ok = parse(&["--host-mode", "--channel-fd", "4", "--state-dir", "/tmp/s"]);
        assert_eq!(
            ok,
            Ok(Invocation::Host(HostArgs {
                channel_fd: 4,
                state_dir: PathBuf::from("/tmp/s"),
            }))
        );
        for bad in [
            &["--channel-fd", "4", "--state-dir", "/tmp/s"][..],
            &["--host-mode", "--state-dir", "/tmp/s"],
            &["--host-mode", "--channel-fd", "4"],
            &["--host-mode", "--channel-fd", "1", "--state-dir", "/tmp/s"],
            &["--host-mode", "--channel-fd", "x", "--state-dir", "/tmp/s"],
            &["--host-mode", "--channel-fd", "4", "--state-dir", ""],
            &[
                "--host-mode",
                "--channel-fd",
                "4",
                "--state-dir",
                "/s",
                "extra",
            ],
            &[
                "--host-mode",
                "--host-mode",
                "--channel-fd",
                "4",
                "--state-dir",
                "/s",
            ],
            &["--host-mode", "--channel-fd"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
