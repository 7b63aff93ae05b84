//! The fast tier: the SDK, the supervisor, its router, the client and the CLI on the fake
//! backend, whose "VM" is the agent as a host process (no QEMU, no kernel). One test binary,
//! so that the tier links once.

mod common;
mod exec;
mod faults;
mod lifecycle;
mod state;
