//! SmolVM: disposable, hardware-isolated microVM sandboxes for AI agents.
//!
//! ```no_run
//! use smolvm::{SmolVm, VmConfig};
//!
//! let vm = SmolVm::create(VmConfig::default())?;
//! vm.set_env_vars(&[("API_KEY".to_string(), "secret-123".to_string())].into(), true)?;
//! let result = vm.run("echo $API_KEY")?;
//! assert_eq!(result.output(), "secret-123");
//! // Dropping `vm` stops it and deletes everything it left on the host.
//! # Ok::<(), smolvm::Error>(())
//! ```
//!
//! Each VM is run by a small supervisor process (see [`supervisor`]) that owns QEMU and the
//! guest channel; the handle talks to it over a Unix socket.

#![forbid(unsafe_code)]

pub mod client;
pub mod config;
mod contract;
pub mod dirs;
mod error;
mod error_code;
pub mod files;
pub mod floor;
pub mod image;
mod launch;
mod names;
pub mod paths;
pub mod process;
pub mod run;
pub mod sandbox;
pub mod setup;
pub mod snapshot;
pub mod state;
mod store;
pub mod supervisor;
pub mod template;
pub mod vm;

pub use config::{ValidConfig, VmConfig, DEFAULT_BOOT_ARGS};
pub use dirs::DataDir;
pub use error::{Error, ErrorCode, Resource, Result, TransferRule};
pub use files::DownloadOptions;
pub use launch::Launcher;
pub use run::{CancelToken, CommandResult, Output, RunOptions, Shell};
/// The wire protocol (re-exported for error kinds and low-level clients).
pub use smolvm_protocol as protocol;
pub use snapshot::SnapshotMeta;
pub use state::SandboxState;
pub use vm::{RestoreOptions, SmolVm, SnapshotOptions, VmState};
