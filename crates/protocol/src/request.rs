//! Requests: what the guest agent serves ([`AgentRequest`]) and what the per-VM supervisor
//! answers itself ([`SupervisorRequest`]). Clients send either on the supervisor's socket as a
//! [`Request`]; only agent requests ever cross the guest channel, and the agent parses nothing
//! else. On the wire every request is one JSON object tagged by `op`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::message::{ExecRequest, GuestIdentity};
#[cfg(doc)]
use crate::message::{Response, TreeEntry};

/// A request served by the guest agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AgentRequest {
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
}

/// A request the per-VM supervisor answers on the host; it never reaches the guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum SupervisorRequest {
    /// report the VM's state.
    Status,
    /// stop the VM (graceful shutdown, forced after `grace_ms`) and exit.
    Stop {
        /// How long to wait for a clean guest shutdown before killing QEMU.
        grace_ms: u64,
    },
    /// time `rounds` bare echo round trips of `size` bytes on the guest channel,
    /// measured by the supervisor itself (the channel floor of the benchmarks).
    ChannelBench {
        /// Number of round trips.
        rounds: u32,
        /// Payload size of each echo.
        size: u32,
    },
    /// stop the guest's vCPUs (memory is kept); answered by [`Response::Ok`].
    Pause,
    /// restart the vCPUs of a paused guest and step its clock to the host's;
    /// answered by [`Response::Ok`].
    Resume,
    /// save memory, device state and disk to `dir` (which must not exist; it is
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

/// What may travel in a request frame (sealed: the three request types).
pub trait WireRequest: Serialize + private::Sealed {
    /// A one-line description that is safe to log.
    fn log_summary(&self) -> String;
}

impl WireRequest for AgentRequest {
    fn log_summary(&self) -> String {
        AgentRequest::log_summary(self)
    }
}

impl WireRequest for SupervisorRequest {
    fn log_summary(&self) -> String {
        SupervisorRequest::log_summary(self)
    }
}

impl WireRequest for Request {
    fn log_summary(&self) -> String {
        Request::log_summary(self)
    }
}

mod private {
    /// Keeps [`super::WireRequest`] to this crate's request types.
    pub trait Sealed {}
    impl Sealed for super::AgentRequest {}
    impl Sealed for super::SupervisorRequest {}
    impl Sealed for super::Request {}
}

/// Any request a client sends to the supervisor.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Forwarded to the guest agent (the handshake and `Shutdown` are intercepted by the
    /// supervisor: it answers a client's `Hello` with the agent's, and turns `Shutdown` into
    /// a stop).
    Agent(AgentRequest),
    /// Answered by the supervisor.
    Supervisor(SupervisorRequest),
}

impl From<AgentRequest> for Request {
    fn from(request: AgentRequest) -> Self {
        Request::Agent(request)
    }
}

impl From<SupervisorRequest> for Request {
    fn from(request: SupervisorRequest) -> Self {
        Request::Supervisor(request)
    }
}

/// The same JSON object as the inner request: the `op` tag alone says whose it is.
impl Serialize for Request {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Request::Agent(request) => request.serialize(serializer),
            Request::Supervisor(request) => request.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(deserializer)?;
        let op = value
            .get("op")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| D::Error::missing_field("op"))?;
        if SupervisorRequest::OPS.contains(&op) {
            SupervisorRequest::deserialize(value)
                .map(Request::Supervisor)
                .map_err(D::Error::custom)
        } else {
            AgentRequest::deserialize(value)
                .map(Request::Agent)
                .map_err(D::Error::custom)
        }
    }
}

impl SupervisorRequest {
    /// The `op` tags of supervisor requests.
    pub const OPS: [&'static str; 6] = [
        "status",
        "stop",
        "channel_bench",
        "pause",
        "resume",
        "snapshot",
    ];

    /// A one-line description that is safe to log.
    pub fn log_summary(&self) -> String {
        match self {
            SupervisorRequest::Status => "status".into(),
            SupervisorRequest::Stop { grace_ms } => format!("stop (grace {grace_ms} ms)"),
            SupervisorRequest::ChannelBench { rounds, size } => {
                format!("channel bench {rounds}x{size}B")
            }
            SupervisorRequest::Pause => "pause".into(),
            SupervisorRequest::Resume => "resume".into(),
            SupervisorRequest::Snapshot { keep_paused, .. } => {
                format!("snapshot (keep paused {keep_paused})")
            }
        }
    }
}

impl AgentRequest {
    /// A one-line description that is safe to log: never contains variable values or command
    /// output. Exhaustive on purpose, so that every new request decides what it may reveal.
    pub fn log_summary(&self) -> String {
        match self {
            AgentRequest::Hello { protocol, .. } => format!("hello v{protocol}"),
            AgentRequest::Exec(exec) => {
                format!("exec ({:?}, {} bytes)", exec.shell, exec.command.len())
            }
            AgentRequest::EnvSet { vars, merge } => {
                format!("env set {} vars merge={merge}", vars.len())
            }
            AgentRequest::EnvList => "env list".into(),
            AgentRequest::EnvUnset { keys } => format!("env unset {} keys", keys.len()),
            AgentRequest::WriteFile { mode, .. } => format!("write file (mode {mode:o})"),
            AgentRequest::ReadFile { .. } => "read file".into(),
            AgentRequest::Stat { .. } => "stat".into(),
            AgentRequest::MakeDir { .. } => "mkdir".into(),
            AgentRequest::Symlink { .. } => "symlink".into(),
            AgentRequest::ListTree { .. } => "list tree".into(),
            AgentRequest::Shutdown => "shutdown".into(),
        }
    }
}

impl Request {
    /// Whether the supervisor answers this request itself instead of forwarding it to the guest.
    pub fn is_for_supervisor(&self) -> bool {
        matches!(self, Request::Supervisor(_))
    }

    /// A one-line description that is safe to log.
    pub fn log_summary(&self) -> String {
        match self {
            Request::Agent(request) => request.log_summary(),
            Request::Supervisor(request) => request.log_summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_op_tag_decides_whose_a_request_is() {
        let pause: Request = serde_json::from_str(r#"{"op":"pause"}"#).unwrap();
        assert_eq!(pause, Request::Supervisor(SupervisorRequest::Pause));
        let exec: Request = serde_json::from_str(r#"{"op":"exec","command":"true"}"#).unwrap();
        assert!(matches!(exec, Request::Agent(AgentRequest::Exec(_))));
        assert!(serde_json::from_str::<Request>(r#"{"command":"true"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
    }

    #[test]
    fn the_agent_parses_no_supervisor_request() {
        for op in SupervisorRequest::OPS {
            let json = format!(r#"{{"op":"{op}"}}"#);
            assert!(serde_json::from_str::<AgentRequest>(&json).is_err(), "{op}");
        }
    }

    #[test]
    fn every_supervisor_op_is_listed() {
        let all = [
            SupervisorRequest::Status,
            SupervisorRequest::Stop { grace_ms: 1 },
            SupervisorRequest::ChannelBench { rounds: 1, size: 1 },
            SupervisorRequest::Pause,
            SupervisorRequest::Resume,
            SupervisorRequest::Snapshot {
                dir: "/x".into(),
                keep_paused: false,
                meta: serde_json::Value::Null,
            },
        ];
        for request in all {
            let value = serde_json::to_value(Request::from(request.clone())).unwrap();
            let op = value["op"].as_str().unwrap().to_string();
            assert!(SupervisorRequest::OPS.contains(&op.as_str()), "{op}");
            let back: Request = serde_json::from_value(value).unwrap();
            assert_eq!(back, Request::Supervisor(request));
        }
    }
}
