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
    use crate::{AgentRequest, Request, SupervisorRequest};

    #[test]
    fn exec_request_json_is_stable_and_defaults_apply() {
        let req: AgentRequest = serde_json::from_str(r#"{"op":"exec","command":"true"}"#).unwrap();
        let AgentRequest::Exec(exec) = req else {
            panic!("not exec")
        };
        assert_eq!(exec.shell, Shell::Login);
        assert!(exec.env.is_empty() && exec.timeout_ms.is_none() && !exec.stdin);

        let json = serde_json::to_string(&AgentRequest::EnvUnset {
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
            SupervisorRequest::Pause,
            SupervisorRequest::Resume,
            SupervisorRequest::Snapshot {
                dir: "/d".into(),
                keep_paused: false,
                meta: serde_json::Value::Null,
            },
        ] {
            assert!(Request::from(request).is_for_supervisor());
        }
        // An older host's hello (no identity) still parses; a new one round-trips.
        let old: AgentRequest =
            serde_json::from_str(r#"{"op":"hello","protocol":1,"host_time_ns":5}"#).unwrap();
        assert!(matches!(old, AgentRequest::Hello { identity: None, .. }));
        let hello = AgentRequest::Hello {
            protocol: 1,
            host_time_ns: None,
            identity: Some(GuestIdentity {
                hostname: "a".into(),
                machine_id: "0".repeat(32),
                seed: "00ff".into(),
            }),
        };
        let back: AgentRequest =
            serde_json::from_slice(&serde_json::to_vec(&hello).unwrap()).unwrap();
        assert_eq!(back, hello);
        // The seed is never logged.
        assert!(!hello.log_summary().contains("00ff"));
    }

    #[test]
    fn log_summary_never_contains_values() {
        let mut vars = BTreeMap::new();
        vars.insert("TOKEN".to_string(), "secret-value".to_string());
        let summary = AgentRequest::EnvSet { vars, merge: true }.log_summary();
        assert!(
            !summary.contains("secret") && !summary.contains("TOKEN"),
            "{summary}"
        );
    }
}
