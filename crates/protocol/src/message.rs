//! Control messages (JSON payloads of `Request` and `Response` frames).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a command line is handed to the guest shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shell {
    /// `/bin/sh -lc CMD`: a login shell, so `/etc/profile` and `/etc/profile.d/*.sh` are read.
    #[default]
    Login,
    /// `/bin/sh -c CMD`: no profile is read.
    Raw,
}

/// Run one command line in the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The command line, parsed by the guest shell.
    pub command: String,
    /// Login or raw shell.
    #[serde(default)]
    pub shell: Shell,
    /// Extra variables for this command only (on top of the agent's base environment).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory; the agent uses `/root` when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Kill the command's process group after this many milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Keep stdin open for `Stdin` frames; otherwise stdin is `/dev/null`.
    #[serde(default)]
    pub stdin: bool,
    /// Run on a pseudo-terminal of this size (stdin, stdout and stderr are all the terminal;
    /// output arrives as `Stdout` frames).
    #[serde(default)]
    pub tty: Option<TtySize>,
}

/// A terminal size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtySize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// What kind of file a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (not followed).
    Symlink,
    /// Anything else (device, socket, fifo).
    Other,
}

/// One entry of a file tree, relative to the tree's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Path relative to the root, `/`-separated, never absolute and never containing `..`.
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Permission bits (`0o7777` mask).
    pub mode: u32,
    /// Size in bytes (files).
    pub size: u64,
    /// Target of a symlink.
    pub target: Option<String>,
}

/// A request. Most are served by the guest agent; the ones marked *supervisor* are answered by
/// the per-VM supervisor on the host and never reach the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Handshake: the first request on every connection.
    Hello {
        /// The sender's [`crate::PROTOCOL_VERSION`].
        protocol: u32,
        /// Host wall-clock time (ns since the Unix epoch); the agent steps the guest clock to it.
        #[serde(default)]
        host_time_ns: Option<u64>,
        /// Who the guest is: sent at every boot and after every restore from a snapshot, so
        /// that guests restored from one snapshot are distinct machines.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        identity: Option<GuestIdentity>,
    },
    /// Run a command; answered by output frames then [`Response::Exited`].
    Exec(ExecRequest),
    /// Set managed environment variables; answered by [`Response::EnvKeys`].
    EnvSet {
        /// Variables to set.
        vars: BTreeMap<String, String>,
        /// Merge into the existing set (`true`) or replace it (`false`).
        merge: bool,
    },
    /// List managed environment variables; answered by [`Response::EnvVars`].
    EnvList,
    /// Remove managed environment variables; answered by [`Response::EnvVars`] with the removed ones.
    EnvUnset {
        /// Names to remove; unknown names are ignored.
        keys: Vec<String>,
    },
    /// Write a file atomically: its content follows as `Stdin` frames, ended by an empty one.
    /// Answered by [`Response::Ok`] once the file is durable and renamed into place.
    WriteFile {
        /// Absolute guest path.
        path: String,
        /// Permission bits.
        mode: u32,
        /// Create missing parent directories.
        #[serde(default)]
        parents: bool,
    },
    /// Read a file (symlinks followed): first a `Stderr` frame carrying a JSON
    /// [`Response::FileInfo`] that announces the size and mode of the opened file, then its
    /// content as `Stdout` frames, then [`Response::FileInfo`]. A `Signal` frame cancels the
    /// read (answered by an error). Hosts must treat the announcement as a claim: the guest
    /// may send more or less.
    ReadFile {
        /// Absolute guest path.
        path: String,
    },
    /// Describe a path (symlinks not followed); answered by [`Response::FileInfo`].
    Stat {
        /// Absolute guest path.
        path: String,
    },
    /// Create a directory (and its parents); answered by [`Response::Ok`].
    MakeDir {
        /// Absolute guest path.
        path: String,
        /// Permission bits.
        mode: u32,
    },
    /// Create a symbolic link; answered by [`Response::Ok`].
    Symlink {
        /// Absolute guest path of the link.
        path: String,
        /// What it points to (stored as given).
        target: String,
    },
    /// List a directory tree (symlinks not followed, parents before children): the entries
    /// come as `Stdout` frames, each a JSON array of [`TreeEntry`] of at most a few hundred
    /// KiB, then [`Response::Tree`] with any remaining entries (none from this agent; older
    /// agents sent all of them there, which failed past the frame limit). A `Signal` frame
    /// cancels the walk.
    ListTree {
        /// Absolute guest path of the root.
        path: String,
    },
    /// Sync filesystems and power the guest off.
    Shutdown,
    /// *Supervisor*: report the VM's state.
    Status,
    /// *Supervisor*: stop the VM (graceful shutdown, forced after `grace_ms`) and exit.
    Stop {
        /// How long to wait for a clean guest shutdown before killing QEMU.
        grace_ms: u64,
    },
    /// *Supervisor*: time `rounds` bare echo round trips of `size` bytes on the guest channel,
    /// measured by the supervisor itself (the channel floor of the benchmarks).
    ChannelBench {
        /// Number of round trips.
        rounds: u32,
        /// Payload size of each echo.
        size: u32,
    },
    /// *Supervisor*: stop the guest's vCPUs (memory is kept); answered by [`Response::Ok`].
    Pause,
    /// *Supervisor*: restart the vCPUs of a paused guest and step its clock to the host's;
    /// answered by [`Response::Ok`].
    Resume,
    /// *Supervisor*: save memory, device state and disk to `dir` (which must not exist; it is
    /// filled under a temporary name and renamed, so it is complete or absent). Answered by
    /// [`Response::Snapshot`].
    Snapshot {
        /// Absolute host path of the snapshot's directory.
        dir: String,
        /// Leave the guest paused afterwards instead of resuming it.
        #[serde(default)]
        keep_paused: bool,
        /// The client's description of the snapshot, stored as its `snapshot.json` with the
        /// measured `stats` added.
        #[serde(default)]
        meta: serde_json::Value,
    },
}

/// A guest's identity, applied by the agent in the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestIdentity {
    /// Hostname (the VM's id).
    pub hostname: String,
    /// 32 lowercase hex digits, written to `/etc/machine-id`.
    pub machine_id: String,
    /// Hex-encoded random bytes mixed into the guest kernel's entropy pool, which is then
    /// reseeded, so that restored copies of one guest draw different random numbers.
    pub seed: String,
}

/// What the supervisor measured while taking a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStats {
    /// Size of the migration stream before compression.
    pub raw_bytes: u64,
    /// Size of the compressed memory file.
    pub memory_bytes: u64,
    /// Size of the copied disk overlay (0 without a disk).
    pub disk_bytes: u64,
    /// How long the guest was stopped, in milliseconds.
    pub paused_ms: u64,
    /// Whole operation, in milliseconds.
    pub save_ms: u64,
}

impl Request {
    /// Whether the supervisor answers this request itself instead of forwarding it to the guest.
    pub fn is_for_supervisor(&self) -> bool {
        match self {
            Request::Status
            | Request::Stop { .. }
            | Request::ChannelBench { .. }
            | Request::Pause
            | Request::Resume
            | Request::Snapshot { .. } => true,
            Request::Hello { .. }
            | Request::Exec(_)
            | Request::WriteFile { .. }
            | Request::ReadFile { .. }
            | Request::Stat { .. }
            | Request::MakeDir { .. }
            | Request::Symlink { .. }
            | Request::ListTree { .. }
            | Request::EnvSet { .. }
            | Request::EnvList
            | Request::EnvUnset { .. }
            | Request::Shutdown => false,
        }
    }

    /// A one-line description that is safe to log: never contains variable values or command
    /// output. Exhaustive on purpose, so that every new request decides what it may reveal.
    pub fn log_summary(&self) -> String {
        match self {
            Request::Hello { protocol, .. } => format!("hello v{protocol}"),
            Request::Exec(exec) => format!("exec ({:?}, {} bytes)", exec.shell, exec.command.len()),
            Request::EnvSet { vars, merge } => format!("env set {} vars merge={merge}", vars.len()),
            Request::EnvList => "env list".into(),
            Request::EnvUnset { keys } => format!("env unset {} keys", keys.len()),
            Request::WriteFile { mode, .. } => format!("write file (mode {mode:o})"),
            Request::ReadFile { .. } => "read file".into(),
            Request::Stat { .. } => "stat".into(),
            Request::MakeDir { .. } => "mkdir".into(),
            Request::Symlink { .. } => "symlink".into(),
            Request::ListTree { .. } => "list tree".into(),
            Request::Shutdown => "shutdown".into(),
            Request::Status => "status".into(),
            Request::Stop { grace_ms } => format!("stop (grace {grace_ms} ms)"),
            Request::ChannelBench { rounds, size } => format!("channel bench {rounds}x{size}B"),
            Request::Pause => "pause".into(),
            Request::Resume => "resume".into(),
            Request::Snapshot { keep_paused, .. } => {
                format!("snapshot (keep paused {keep_paused})")
            }
        }
    }
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, when the command exited normally.
    pub code: Option<i32>,
    /// Terminating signal, when it was killed.
    pub signal: Option<i32>,
    /// The agent killed the command's process group because its timeout passed.
    pub timed_out: bool,
    /// Guest-side time from spawn to reap, in microseconds (the guest's own cost of the command).
    pub guest_micros: u64,
}

/// What the agent says about itself in the handshake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The agent's [`crate::PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The agent's crate version.
    pub agent_version: String,
    /// Features this agent serves (`exec`, `env`, `signal`, `stdin`, `echo`, `shutdown`).
    pub capabilities: Vec<String>,
    /// Guest uptime when the handshake was answered, in milliseconds.
    pub uptime_ms: u64,
}

/// What the supervisor reports about its VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorStatus {
    /// The VM's id.
    pub vm_id: String,
    /// `running` while the guest answers, `paused` while its vCPUs are stopped, `stopping`
    /// once a stop began.
    pub state: String,
    /// The QEMU process id.
    pub qemu_pid: u32,
    /// The supervisor's process id.
    pub supervisor_pid: u32,
    /// The accelerator in use (`kvm` or `tcg`).
    pub accel: String,
    /// The agent's handshake answer.
    pub agent: AgentInfo,
}

/// Broad classes of failure, so that clients can map them to their own error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was malformed or not understood.
    InvalidRequest,
    /// An argument failed validation (e.g. an environment variable key).
    Validation,
    /// A file or process that was named does not exist.
    NotFound,
    /// The command could not be started.
    Spawn,
    /// A guest-side I/O operation failed.
    Io,
    /// The VM is not running (stopping, stopped).
    VmNotRunning,
    /// The VM is paused: resume it first.
    Paused,
    /// Anything else.
    Internal,
}

/// The final answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Handshake answer.
    Hello(AgentInfo),
    /// The command ended.
    Exited(ExitStatus),
    /// Sorted names of all managed variables after an `EnvSet`.
    EnvKeys {
        /// The names.
        keys: Vec<String>,
    },
    /// Managed variables (`EnvList`) or the removed ones with their old values (`EnvUnset`).
    EnvVars {
        /// Name → value.
        vars: BTreeMap<String, String>,
    },
    /// Done, nothing to report.
    Ok,
    /// Supervisor status.
    Status(SupervisorStatus),
    /// What a path is (`Stat`), or what was read (`ReadFile`).
    FileInfo {
        /// Kind; `None` when the path does not exist.
        kind: Option<FileKind>,
        /// Permission bits.
        mode: u32,
        /// Size in bytes.
        size: u64,
    },
    /// The end of a `ListTree`, with the entries not already streamed, parents before
    /// children.
    Tree {
        /// The entries.
        entries: Vec<TreeEntry>,
    },
    /// A snapshot was written.
    Snapshot(SnapshotStats),
    /// Round-trip times of a `ChannelBench`, in nanoseconds.
    ChannelBench {
        /// One entry per round trip.
        round_trips_ns: Vec<u64>,
    },
    /// The request failed.
    Error {
        /// Class of failure.
        kind: ErrorKind,
        /// Human-readable explanation.
        message: String,
    },
}

impl Response {
    /// Shorthand for an error response.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Response::Error {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_request_json_is_stable_and_defaults_apply() {
        let req: Request = serde_json::from_str(r#"{"op":"exec","command":"true"}"#).unwrap();
        let Request::Exec(exec) = req else {
            panic!("not exec")
        };
        assert_eq!(exec.shell, Shell::Login);
        assert!(exec.env.is_empty() && exec.timeout_ms.is_none() && !exec.stdin);

        let json = serde_json::to_string(&Request::EnvUnset {
            keys: vec!["A".into()],
        })
        .unwrap();
        assert_eq!(json, r#"{"op":"env_unset","keys":["A"]}"#);
    }

    #[test]
    fn responses_round_trip() {
        let all = vec![
            Response::Exited(ExitStatus {
                code: Some(3),
                signal: None,
                timed_out: false,
                guest_micros: 5,
            }),
            Response::EnvKeys {
                keys: vec!["A".into()],
            },
            Response::Ok,
            Response::error(ErrorKind::Validation, "bad key"),
        ];
        for r in all {
            let back: Response = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn vm_level_requests_go_to_the_supervisor_and_identity_is_optional() {
        for request in [
            Request::Pause,
            Request::Resume,
            Request::Snapshot {
                dir: "/d".into(),
                keep_paused: false,
                meta: serde_json::Value::Null,
            },
        ] {
            assert!(request.is_for_supervisor(), "{request:?}");
        }
        // An older host's hello (no identity) still parses; a new one round-trips.
        let old: Request =
            serde_json::from_str(r#"{"op":"hello","protocol":1,"host_time_ns":5}"#).unwrap();
        assert!(matches!(old, Request::Hello { identity: None, .. }));
        let hello = Request::Hello {
            protocol: 1,
            host_time_ns: None,
            identity: Some(GuestIdentity {
                hostname: "a".into(),
                machine_id: "0".repeat(32),
                seed: "00ff".into(),
            }),
        };
        let back: Request = serde_json::from_slice(&serde_json::to_vec(&hello).unwrap()).unwrap();
        assert_eq!(back, hello);
        // The seed is never logged.
        assert!(!hello.log_summary().contains("00ff"));
    }

    #[test]
    fn log_summary_never_contains_values() {
        let mut vars = BTreeMap::new();
        vars.insert("TOKEN".to_string(), "secret-value".to_string());
        let summary = Request::EnvSet { vars, merge: true }.log_summary();
        assert!(
            !summary.contains("secret") && !summary.contains("TOKEN"),
            "{summary}"
        );
    }
}
