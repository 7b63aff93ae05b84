//! Options and results of running a command.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use smolvm_protocol::Shell;

/// The reference API's default command timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to run a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// Login shell (profile read, managed variables visible) or raw shell.
    pub shell: Shell,
    /// Kill the command's whole process group after this long; `None` waits forever.
    pub timeout: Option<Duration>,
    /// Extra variables for this command only.
    pub env: BTreeMap<String, String>,
    /// Working directory in the guest (default `/root`).
    pub cwd: Option<String>,
    /// Cancels the command from another thread (e.g. on Ctrl-C): its process group is killed
    /// and the call returns [`crate::Error::Cancelled`].
    pub cancel: Option<CancelToken>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            shell: Shell::Login,
            timeout: Some(DEFAULT_TIMEOUT),
            env: BTreeMap::new(),
            cwd: None,
            cancel: None,
        }
    }
}

/// A flag that cancels a running command when set. Cheap to clone; all clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl PartialEq for CancelToken {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CancelToken {}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every command that watches this token.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl RunOptions {
    /// Default options with a raw shell.
    pub fn raw() -> Self {
        Self {
            shell: Shell::Raw,
            ..Self::default()
        }
    }

    /// These options with `timeout`.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
}

/// A piece of output, as it arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output<'a> {
    /// Bytes written to stdout.
    Stdout(&'a [u8]),
    /// Bytes written to stderr.
    Stderr(&'a [u8]),
}

/// What a finished command produced. A non-zero exit code is a result, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// Exit code; `128 + N` when the command was killed by signal N, as shells report it.
    pub exit_code: i32,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
    /// Guest-side time from spawn to reap (the guest's own cost of the command).
    pub guest_time: Duration,
}

impl CommandResult {
    /// stdout as text (invalid UTF-8 replaced with U+FFFD).
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (invalid UTF-8 replaced with U+FFFD).
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// stdout as text with surrounding whitespace removed, as the reference's `output`.
    pub fn output(&self) -> String {
        self.stdout_str().trim().to_string()
    }

    /// Whether the command exited with code 0.
    pub fn ok(&self) -> bool {
        self.exit_code == 0
    }
}

/// Joins command words into one command line the way `ssh host CMD...` does: with single
/// spaces, leaving all parsing to the guest shell.
pub fn join_command_words<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_trimmed_stdout_and_ok_means_zero() {
        let r = CommandResult {
            exit_code: 0,
            stdout: b"  hi\n\n".to_vec(),
            stderr: vec![0xff],
            guest_time: Duration::ZERO,
        };
        assert_eq!(r.output(), "hi");
        assert_eq!(r.stderr_str(), "\u{fffd}");
        assert!(r.ok());
        assert!(!CommandResult { exit_code: 3, ..r }.ok());
    }

    #[test]
    fn words_join_like_ssh() {
        assert_eq!(
            join_command_words(&["echo $HOME;", "exit 3"]),
            "echo $HOME; exit 3"
        );
        assert_eq!(join_command_words::<&str>(&[]), "");
    }
}
