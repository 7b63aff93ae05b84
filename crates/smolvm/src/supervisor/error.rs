//! What can go wrong in a supervisor: typed, so that callers decide by kind (a damaged
//! snapshot is discarded, a busy VM is told to retry) and the message is made once.

use std::path::PathBuf;
use std::time::Duration;

/// A supervisor failure. Its message is what the ready line, `exit.json` and clients show.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SupervisorError {
    /// The VM's `vm.json` is missing or unreadable.
    #[error("cannot read {path}: {reason}")]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A host resource (socket, thread, pipe, file) could not be set up or used.
    #[error("{what}: {source}")]
    Host {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No backend can run the VM on this host.
    #[error("{0}")]
    Backend(String),
    /// The VMM failed to start or refused a control command.
    #[error(transparent)]
    Vmm(#[from] smolvm_vmm::Error),
    /// A snapshot (or template) file is unusable: it says which and what to do.
    #[error("{0}")]
    DamagedSnapshot(String),
    /// The VMM did not load a snapshot's state.
    #[error("{0}")]
    Load(String),
    /// The guest stopped, or its channel closed, before it answered.
    #[error("{0}")]
    GuestGone(String),
    /// The guest agent answered with something other than what was asked for.
    #[error("{0}")]
    Agent(String),
    /// Something took longer than its limit.
    #[error("{what} took over {limit:?}{hint}")]
    Timeout {
        /// What.
        what: &'static str,
        /// The limit.
        limit: Duration,
        /// Where to look, e.g. "; see console.log".
        hint: &'static str,
    },
}

impl SupervisorError {
    /// A [`SupervisorError::Host`] for `what`.
    pub(crate) fn host(what: impl Into<String>, source: std::io::Error) -> Self {
        SupervisorError::Host {
            what: what.into(),
            source,
        }
    }
}

/// A supervisor result.
pub(crate) type Result<T, E = SupervisorError> = std::result::Result<T, E>;
