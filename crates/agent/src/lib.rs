//! SmolVM guest agent, as a library.
//!
//! The agent serves the host over one byte stream of [`smolvm_protocol`] frames: it runs
//! commands, keeps the managed environment file, transfers files and answers the handshake.
//! No async runtime: one thread reads frames, each command gets a thread of its own, and a
//! reaper thread collects exit statuses.
//!
//! It runs in two ways:
//!
//! - **Guest** (the binary as PID 1 of every SmolVM guest): [`guest::prepare`] the machine,
//!   [`guest::open_agent_port`], [`serve`] with [`Options::guest`], then
//!   [`guest::power_off`] or [`guest::reboot_now`].
//! - **Host mode** (tests, no VM): the binary run as
//!   `smolvm-agent --host-mode --channel-fd FD --state-dir DIR` by a fake backend, which
//!   calls [`run_host_mode`]. It is an ordinary host process standing in for a VM: every
//!   effect a guest would have on its own machine is redirected under the state dir or
//!   skipped (see [`Options`]), and commands run as the invoking user on the host. It is a
//!   test double, not a sandbox. See [`host`] for the flags.
//!
//! # The SIGCHLD rule
//!
//! The [`Reaper`] blocks SIGCHLD and consumes it with `sigwait` on a thread of its own, and it
//! waits for *every* child of the process. So it must be started on the main thread before
//! any other thread exists, and only in a process of its own: never inside a test harness.
//! Tests run the binary in host mode over a socket pair instead (see `tests/`).

mod env;
mod exec;
mod files;
mod flow;
pub mod guest;
pub mod host;
mod identity;
mod init;
mod options;
mod port;
pub mod printenv;
mod reaper;
mod server;
mod shared;
mod sys;

pub use host::run_host_mode;
pub use options::Options;
pub use reaper::Reaper;
pub use server::{serve, Ended, HOST_MODE_CAPABILITY};
