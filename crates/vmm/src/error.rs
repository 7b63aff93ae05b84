//! What can go wrong making or controlling a machine.

use std::path::PathBuf;

/// A VMM failure. Messages name the file or program involved and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The VMM program is not installed.
    #[error("{program} is not installed; {hint}")]
    MissingProgram {
        /// The program.
        program: &'static str,
        /// How to install it.
        hint: String,
    },
    /// A file the machine boots from cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The machine's disk failed its checks (a tampered overlay could name any host file).
    #[error("refusing the VM's disk: {0}")]
    RefusedDisk(std::io::Error),
    /// Another host operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The VMM's monitor refused a command or stopped answering.
    #[error("{0}")]
    Monitor(String),
    /// This backend cannot do what was asked.
    #[error("the {backend} backend cannot {what}")]
    Unsupported {
        /// The backend's name.
        backend: &'static str,
        /// What was asked.
        what: &'static str,
    },
}

impl Error {
    /// An [`Error::Io`] for `context`.
    pub fn io(context: &'static str, source: std::io::Error) -> Self {
        Error::Io { context, source }
    }
}

/// A result with a VMM [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
