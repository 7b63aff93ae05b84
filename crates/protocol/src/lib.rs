//! The SmolVM wire protocol, shared by the host (SDK and supervisor) and the guest agent.
//!
//! Every message travels in a [`Frame`]: a length-prefixed header carrying a request id and a
//! [`FrameKind`], then a payload. Control messages ([`Request`], [`Response`]) are JSON; data
//! (stdout, stderr, stdin, echo) is carried as raw bytes so that binary output costs nothing to
//! encode. Request ids let many requests share one byte stream: every frame that belongs to a
//! request (its output chunks, its stdin, a signal, its final response) carries that request's id.
//!
//! The same framing is used on both hops: client ↔ supervisor (Unix socket) and
//! supervisor ↔ agent (virtio-serial port).

#![forbid(unsafe_code)]

mod envfile;
mod error;
mod frame;
mod message;
mod request;

pub use envfile::{
    env_entry_cost, parse_env_file, render_env_file, validate_env_key, validate_env_set,
    validate_env_value, EnvValidationError, ENV_FILE_HEADER, ENV_FILE_PATH, MAX_ENV_ENTRY_BYTES,
    MAX_ENV_TOTAL_BYTES,
};
pub use error::ProtocolError;
pub use frame::{read_frame, write_frame, Frame, FrameKind, HEADER_LEN, MAX_PAYLOAD};
pub use message::{
    AgentInfo, ErrorKind, ExecRequest, ExitStatus, FileKind, GuestIdentity, Response, Shell,
    SnapshotStats, SupervisorStatus, TreeEntry, TtySize,
};
pub use request::{AgentRequest, Request, SupervisorRequest, WireRequest};

/// Version of this protocol. Peers exchange it in the `Hello` handshake and refuse to talk to a
/// peer with a different major version.
/// 2: per-request flow control ([`FrameKind::Credit`]).
pub const PROTOCOL_VERSION: u32 = 2;

/// Flow control, per request and per direction, so that no command and no client can stall
/// another on the shared channel: the agent sends at most this many bytes of a request's
/// output (`Stdout`/`Stderr` frames) beyond what the host has granted back with
/// [`FrameKind::Credit`] frames as it consumes them. The supervisor enforces it: a guest that
/// sends more has that request failed.
pub const OUTPUT_WINDOW: u32 = 4 << 20;
/// The host sends at most this many bytes of a request's input (`Stdin` frames: a command's
/// stdin, a file's content) beyond what the agent has credited back as it consumed them.
pub const INPUT_WINDOW: u32 = 8 << 20;
/// The host grants output credit in batches of at least this many bytes.
pub const CREDIT_BATCH: u32 = 256 << 10;

/// Name of the virtio-serial port the agent serves on (`virtserialport,name=...`).
pub const AGENT_PORT_NAME: &str = "org.smolvm.agent.0";
