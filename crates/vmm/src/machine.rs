//! Controlling a running machine through its VMM's monitor.

use std::os::fd::OwnedFd;

use crate::error::Result;

/// How a state save started by [`Machine::save_state`] is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaveStatus {
    /// Still writing.
    InProgress,
    /// All of the state is in the stream.
    Completed,
    /// The VMM gave up, with its reason.
    Failed(String),
}

/// A running machine's controls. The supervisor serialises calls (one monitor session).
pub trait Machine: Send {
    /// Stops the vCPUs; memory and devices are kept.
    fn pause(&mut self) -> Result<()>;
    /// Restarts the vCPUs (after a pause, or once a restore has loaded).
    fn resume(&mut self) -> Result<()>;
    /// Starts writing the paused machine's state (devices and memory) into `stream`; the
    /// stream ends when the state is complete, then [`Machine::save_status`] says how it went.
    fn save_state(&mut self, stream: OwnedFd) -> Result<()>;
    /// How the last [`Machine::save_state`] is going.
    fn save_status(&mut self) -> Result<SaveStatus>;
    /// Whether a machine launched with an incoming state is still loading it.
    fn is_loading(&mut self) -> Result<bool>;
}
