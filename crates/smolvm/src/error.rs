//! The SDK's error type, and its stable [`ErrorCode`]s.

use std::path::PathBuf;
use std::time::Duration;

use smolvm_protocol::{EnvValidationError, ErrorKind, ProtocolError};

use crate::state::SandboxState;

pub use crate::error_code::{ErrorCode, Resource};

/// What [`Error::NoSpace`] says to do.
const NO_SPACE_HINT: &str = "free some space or point SMOLVM_DATA_DIR at a larger disk";

/// Everything that can go wrong in the SDK. Each message says what happened, to which sandbox,
/// and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration or argument failed validation; nothing was changed.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The offending field or argument.
        field: &'static str,
        /// Why it is wrong and what is accepted.
        reason: String,
    },
    /// An environment variable key or value was refused; nothing was changed.
    #[error(transparent)]
    InvalidEnv(#[from] EnvValidationError),
    /// The name asked for is taken: a sandbox or a snapshot by that name exists; nothing was
    /// changed. (Reported as invalid input of [`Resource::field`].)
    #[error("invalid {}: a {what} named {name:?} already exists; {hint}", .what.field())]
    AlreadyExists {
        /// What kind of thing the name is taken by.
        what: Resource,
        /// The name asked for.
        name: String,
        /// What to do: pick another name, or remove the existing one.
        hint: String,
    },
    /// The operation needs a running VM.
    #[error("{action}: VM is {state} (VM {vm_id})")]
    VmNotRunning {
        /// What was attempted, e.g. "Cannot manage environment variables".
        action: &'static str,
        /// The VM's id.
        vm_id: String,
        /// Its state (`created`, `paused`, `stopped`, `deleted`, ...).
        state: SandboxState,
    },
    /// A command ran past its timeout; its process group was killed.
    #[error("command {command:?} timed out after {timeout:?} in VM {vm_id}; it was killed")]
    Timeout {
        /// The command line.
        command: String,
        /// The limit that passed.
        timeout: Duration,
        /// The VM's id.
        vm_id: String,
    },
    /// The command was cancelled through its [`crate::run::CancelToken`]; it was killed.
    #[error("command {command:?} was cancelled in VM {vm_id}; it was killed")]
    Cancelled {
        /// The command line.
        command: String,
        /// The VM's id.
        vm_id: String,
    },
    /// No sandbox, image or file by that name.
    #[error("no {what} named {name:?}; {hint}")]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// The name given.
        name: String,
        /// How to see what exists.
        hint: String,
    },
    /// A file the VM needs (kernel, image, QEMU, the supervisor binary...) is missing.
    #[error("{what} not found at {path}; {hint}")]
    MissingFile {
        /// What it is.
        what: &'static str,
        /// Where it was expected.
        path: PathBuf,
        /// How to get it.
        hint: String,
    },
    /// A host program the SDK needs is not installed.
    #[error("{program} is not installed; {hint}")]
    MissingProgram {
        /// The program.
        program: &'static str,
        /// How to install it.
        hint: String,
    },
    /// The VM failed to boot or its supervisor failed.
    #[error("VM {vm_id} failed to start: {reason}")]
    StartFailed {
        /// The VM's id.
        vm_id: String,
        /// What went wrong, with the end of the QEMU/console log when useful.
        reason: String,
    },
    /// The guest agent answered with an error.
    #[error("guest error in VM {vm_id} ({kind:?}): {message}")]
    Guest {
        /// The VM's id.
        vm_id: String,
        /// Class of failure.
        kind: ErrorKind,
        /// The agent's explanation.
        message: String,
    },
    /// The connection to the VM's supervisor broke (the VM stopped or crashed).
    #[error("lost the connection to VM {vm_id}: {reason}")]
    Disconnected {
        /// The VM's id.
        vm_id: String,
        /// What was seen.
        reason: String,
    },
    /// A protocol-level failure (malformed or unexpected frames).
    #[error("protocol error talking to VM {vm_id}: {source}")]
    Protocol {
        /// The VM's id.
        vm_id: String,
        /// The underlying error.
        source: ProtocolError,
    },
    /// A host-side I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Building the kernel or an image failed.
    #[error("build failed: {0}")]
    Build(String),
    /// Building an image failed at `step`; nothing half-built was kept.
    #[error("building image {image} failed ({step}): {reason}")]
    ImageBuild {
        /// The image's name.
        image: String,
        /// What was being done (`debootstrap`, `mkfs.ext4`, ...).
        step: &'static str,
        /// What went wrong, in the failing tool's own words.
        reason: String,
    },
    /// Not enough free disk space; checked before anything is written.
    #[error(
        "not enough disk space for {what} in {dir}: {needed_mib} MiB needed, {available_mib} MiB \
         available; {NO_SPACE_HINT}"
    )]
    NoSpace {
        /// What needs the space, e.g. `image debian`.
        what: String,
        /// Where it is needed.
        dir: PathBuf,
        /// How much is needed, in MiB.
        needed_mib: u64,
        /// How much is free, in MiB.
        available_mib: u64,
    },
    /// The data directory could be read or changed by someone else; nothing was done in it.
    #[error("unsafe data directory {path}: {problem}; {fix}")]
    UnsafeDataDir {
        /// The data directory.
        path: PathBuf,
        /// What is wrong with it (owner or mode).
        problem: String,
        /// How to fix it, e.g. `chmod 700 PATH`.
        fix: String,
    },
    /// A file transfer was refused or stopped by one of its safety rules (see
    /// [`TransferRule`]); nothing was left at the destination.
    #[error("{what} refused: {reason}; {hint}")]
    Transfer {
        /// What was being transferred, e.g. `download of /out from VM vm-1a2b3c4d`.
        what: String,
        /// The rule that stopped it.
        rule: TransferRule,
        /// The facts: which entry, which size, which path.
        reason: String,
        /// What to do about it.
        hint: String,
    },
}

/// The safety rules of file transfers, so that callers can tell refusals apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferRule {
    /// The guest's tree listing is malformed or would create, follow or change something
    /// outside the destination (escaping symlink, duplicate path, missing parent...).
    UnsafeTree,
    /// A local symlink being uploaded points outside the uploaded tree.
    UnsafeUpload,
    /// The destination exists and is not empty, and overwriting was not asked for.
    DestinationNotEmpty,
    /// The announced or received size, or the number of entries, is over a cap.
    TooLarge,
    /// The destination filesystem has not enough free space for the announced size.
    NoSpace,
    /// The guest sent nothing for longer than the idle timeout, or the deadline passed.
    Stalled,
}

impl Error {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The stable, machine-readable class of this error (the CLI's `--json` `code`, the
    /// Python exception class, the process exit code are all looked up by it).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidConfig { .. } | Error::InvalidEnv(_) => ErrorCode::InvalidInput,
            Error::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            Error::VmNotRunning { .. } => ErrorCode::VmNotRunning,
            Error::Timeout { .. } => ErrorCode::Timeout,
            Error::Cancelled { .. } => ErrorCode::Cancelled,
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::MissingFile { .. } => ErrorCode::MissingFile,
            Error::MissingProgram { .. } => ErrorCode::MissingProgram,
            Error::StartFailed { .. } => ErrorCode::StartFailed,
            // The guest refused the request's arguments: the caller's input, not the guest.
            Error::Guest {
                kind: ErrorKind::Validation,
                ..
            } => ErrorCode::InvalidInput,
            Error::Guest { .. } => ErrorCode::GuestError,
            Error::Disconnected { .. } => ErrorCode::Disconnected,
            Error::Protocol { .. } => ErrorCode::ProtocolError,
            Error::Io { .. } => ErrorCode::IoError,
            Error::Build(_) | Error::ImageBuild { .. } => ErrorCode::BuildFailed,
            Error::NoSpace { .. } => ErrorCode::NoSpace,
            Error::UnsafeDataDir { .. } => ErrorCode::UnsafeDataDir,
            Error::Transfer { rule, .. } => match rule {
                TransferRule::UnsafeTree => ErrorCode::UnsafeTree,
                TransferRule::UnsafeUpload => ErrorCode::UnsafeUpload,
                TransferRule::DestinationNotEmpty => ErrorCode::DestinationNotEmpty,
                TransferRule::TooLarge => ErrorCode::TooLarge,
                TransferRule::NoSpace => ErrorCode::NoSpace,
                TransferRule::Stalled => ErrorCode::Timeout,
            },
        }
    }

    /// What to do about it, when the error knows (it is also the end of the message).
    pub fn hint(&self) -> Option<&str> {
        match self {
            Error::AlreadyExists { hint, .. }
            | Error::NotFound { hint, .. }
            | Error::MissingFile { hint, .. }
            | Error::MissingProgram { hint, .. }
            | Error::Transfer { hint, .. } => Some(hint),
            Error::UnsafeDataDir { fix, .. } => Some(fix),
            Error::NoSpace { .. } => Some(NO_SPACE_HINT),
            Error::InvalidConfig { .. }
            | Error::InvalidEnv(_)
            | Error::VmNotRunning { .. }
            | Error::Timeout { .. }
            | Error::Cancelled { .. }
            | Error::StartFailed { .. }
            | Error::Guest { .. }
            | Error::Disconnected { .. }
            | Error::Protocol { .. }
            | Error::Io { .. }
            | Error::Build(_)
            | Error::ImageBuild { .. } => None,
        }
    }
}

/// The SDK's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<smolvm_vmm::Error> for Error {
    /// The SDK meets VMM errors only where it looks for the VMM itself (`find_qemu`) or
    /// inspects a disk; the supervisor reports the rest in its start failure.
    fn from(e: smolvm_vmm::Error) -> Self {
        match e {
            smolvm_vmm::Error::MissingProgram { program, hint } => {
                Error::MissingProgram { program, hint }
            }
            smolvm_vmm::Error::Open { path, source } => {
                Error::io(format!("opening {}", path.display()), source)
            }
            other => Error::io("the VMM", std::io::Error::other(other.to_string())),
        }
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
