//! SmolVM's fast test tier: the supervisor, router, client and SDK in plain `cargo test`, with
//! no QEMU and no guest kernel.
//!
//! - [`FakeBackend`] implements [`smolvm_vmm::Backend`]: its "VM" is the guest agent run as
//!   an ordinary host process in host mode (`smolvm-fake-agent`, the agent library's host-mode
//!   entry), connected to the supervisor over a socket pair exactly where QEMU's virtio-serial
//!   port would be. Pause is `SIGSTOP`, resume `SIGCONT`; saving a machine's state (snapshots)
//!   is unsupported.
//! - `smolvm-fake-supervisor --dir DIR` is the production supervisor
//!   ([`smolvm::supervisor::run_with`]) on that backend. It exists only in this crate, so no
//!   production binary can run commands unsandboxed.
//! - [`TestEnv`] is a private, throw-away data directory that passes
//!   [`smolvm::VmConfig::validate`] without a real kernel or image, and makes [`smolvm::SmolVm`]
//!   handles started by the fake supervisor.
//!
//! Commands run as the invoking user, **on the host**: host mode is a test double, not a
//! sandbox. Tests write only under temporary folders.

#![forbid(unsafe_code)]

mod backend;
mod env;

pub use backend::{find_agent, FakeBackend, FakeMachine, AGENT_ENV, CHANNEL_FD, GUEST_DIR};
pub use env::{find_fake_supervisor, TestEnv, FAKE_BOOT_ARGS};
