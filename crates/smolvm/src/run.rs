//! Options and results of running a command.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use smolvm_protocol::Shell;

/// The reference API's default command timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of each stream (stdout, stderr) a buffered run keeps by default: 64 MiB.
///
/// Far above what anyone reads from a command's result (logs, JSON, test reports), yet it
/// bounds a hostile or runaway guest: both streams together hold at most 128 MiB on the host,
/// about 256 MiB once a language binding has made its own copy, instead of growing with
/// whatever the guest writes (1 GiB of stdout used to cost 3 GiB in Python).
pub const DEFAULT_MAX_OUTPUT: usize = 64 << 20;

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
    /// Bytes of each stream that a buffered run (`run`, `run_with`) keeps: the first
    /// `max_output` bytes are kept, the rest is read and dropped (so the command runs to its
    /// end) and [`CommandResult::stdout_truncated`] / `stderr_truncated` is set. `None` keeps
    /// everything. Default [`DEFAULT_MAX_OUTPUT`]. Streaming (`run_streaming`, `spawn`) hands
    /// every byte to the caller and ignores it.
    pub max_output: Option<usize>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            shell: Shell::Login,
            timeout: Some(DEFAULT_TIMEOUT),
            env: BTreeMap::new(),
            cwd: None,
            cancel: None,
            max_output: Some(DEFAULT_MAX_OUTPUT),
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

    /// These options with `max_output` bytes kept per stream (`None`: everything).
    pub fn with_max_output(mut self, max_output: Option<usize>) -> Self {
        self.max_output = max_output;
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
    /// What the command wrote to stdout: all of it, or its first
    /// [`RunOptions::max_output`] bytes when `stdout_truncated`.
    pub stdout: Vec<u8>,
    /// What the command wrote to stderr (capped likewise).
    pub stderr: Vec<u8>,
    /// stdout went past the cap: `stdout` holds only its beginning.
    pub stdout_truncated: bool,
    /// stderr went past the cap: `stderr` holds only its beginning.
    pub stderr_truncated: bool,
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

/// Collects one output stream, keeping at most `cap` bytes and remembering whether more came.
///
/// Capacity grows by doubling but never past the cap, so memory stays at most `cap` bytes
/// (plain `Vec` growth could reserve up to twice the cap just below it).
#[derive(Debug, Default)]
pub(crate) struct CappedBuffer {
    data: Vec<u8>,
    cap: Option<usize>,
    truncated: bool,
}

impl CappedBuffer {
    /// An empty buffer that keeps `cap` bytes (`None`: no limit).
    pub(crate) fn new(cap: Option<usize>) -> Self {
        Self {
            data: Vec::new(),
            cap,
            truncated: false,
        }
    }

    /// Appends what still fits of `bytes`; the rest is dropped and marks the buffer truncated.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let Some(cap) = self.cap else {
            self.data.extend_from_slice(bytes);
            return;
        };
        let room = cap - self.data.len();
        let take = bytes.len().min(room);
        if take < bytes.len() {
            self.truncated = true;
        }
        let needed = self.data.len() + take;
        if needed > self.data.capacity() {
            let target = needed.max(self.data.capacity() * 2).min(cap);
            self.data.reserve_exact(target - self.data.len());
        }
        self.data.extend_from_slice(&bytes[..take]);
    }

    /// The bytes kept and whether any were dropped.
    pub(crate) fn finish(self) -> (Vec<u8>, bool) {
        (self.data, self.truncated)
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
            stdout_truncated: false,
            stderr_truncated: false,
            guest_time: Duration::ZERO,
        };
        assert_eq!(r.output(), "hi");
        assert_eq!(r.stderr_str(), "\u{fffd}");
        assert!(r.ok());
        assert!(!CommandResult { exit_code: 3, ..r }.ok());
    }

    #[test]
    fn capped_buffer_keeps_the_first_bytes_and_flags_the_rest() {
        let mut buf = CappedBuffer::new(Some(10));
        buf.push(b"hello");
        buf.push(b"");
        buf.push(b"wor");
        assert!(!buf.truncated);
        buf.push(b"ld and more");
        buf.push(b"more still");
        assert!(buf.data.capacity() <= 10, "{}", buf.data.capacity());
        assert_eq!(buf.finish(), (b"helloworld".to_vec(), true));

        // Exactly the cap is not truncation.
        let mut buf = CappedBuffer::new(Some(4));
        buf.push(b"abcd");
        assert_eq!(buf.finish(), (b"abcd".to_vec(), false));

        let mut buf = CappedBuffer::new(None);
        buf.push(&[7; 1000]);
        assert_eq!(buf.finish(), (vec![7; 1000], false));
    }

    #[test]
    fn capped_buffer_never_reserves_past_the_cap() {
        let cap = 1 << 20;
        let mut buf = CappedBuffer::new(Some(cap));
        // Odd chunk sizes make plain Vec growth overshoot a power-of-two cap.
        for _ in 0..2000 {
            buf.push(&[1; 1000]);
            assert!(buf.data.capacity() <= cap);
        }
        let (kept, truncated) = buf.finish();
        assert_eq!(kept.len(), cap);
        assert!(truncated);
    }

    #[test]
    fn run_options_cap_output_by_default() {
        assert_eq!(RunOptions::default().max_output, Some(DEFAULT_MAX_OUTPUT));
        assert_eq!(RunOptions::raw().with_max_output(None).max_output, None);
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
