//! Virtual machine monitors: how a SmolVM sandbox's machine is made, run and controlled.
//!
//! The supervisor (in the `smolvm` crate) knows a VMM only through two traits:
//! - [`Backend`] turns a backend-neutral [`MachineSpec`] into a process to spawn plus the host
//!   ends of the machine's three connections — the guest channel (the agent's byte stream), the
//!   monitor and the serial console — with every file it needs handed over as a descriptor
//!   ([`inherit`]), confined before `exec` ([`jail`]).
//! - [`Machine`] controls the running machine through its monitor: pause, resume, and streaming
//!   its state out (a snapshot) or in (a restore, started with [`LaunchOptions::incoming`]).
//!
//! [`qemu`] implements both for QEMU's `microvm` machine (KVM or TCG); everything that speaks
//! QEMU — its command line, QMP, migration, `-incoming`, qcow2 overlays — lives there and
//! nowhere else.
//!
//! # Mapping another VMM: Firecracker
//!
//! A Firecracker backend fits the same seam (it is not written yet):
//! - **prepare/spawn**: `firecracker --api-sock` (or `--config-file` built from the
//!   [`MachineSpec`]: `boot-source` for the kernel, initramfs and boot arguments,
//!   `machine-config` for vCPUs and memory, `drives` for the root disk); run under its own
//!   `jailer` or our [`jail`]. Firecracker has no qcow2: the disk plan becomes a raw copy
//!   (or a device-mapper snapshot) made before launch.
//! - **guest channel**: Firecracker has no virtio-serial; the agent's stream rides virtio-vsock,
//!   which Firecracker exposes on the host as a Unix socket (`CONNECT <port>` handshake). The
//!   channel end in [`PreparedVm`] is that connected socket, so the router and the protocol do
//!   not change.
//! - **monitor**: the API socket (HTTP) instead of QMP: `PATCH /vm {"state":"Paused"}` and
//!   `"Resumed"` implement [`Machine::pause`]/[`Machine::resume`].
//! - **snapshots**: `PUT /snapshot/create` writes a state file and a memory file (no stream);
//!   [`Machine::save_state`] copies them into the stream, and a restore starts Firecracker and
//!   `PUT /snapshot/load`s files unpacked from it instead of `-incoming`.
//! - **console**: the process's serial output on stdout, handed over as the console end.

pub mod accel;
mod backend;
mod error;
pub mod inherit;
pub mod jail;
mod machine;
pub mod qemu;
mod spec;

pub use backend::{spawn, Backend, LaunchOptions, ParentThread, PreparedVm, Spawned};
pub use error::{Error, Result};
pub use machine::{Machine, SaveStatus};
pub use spec::{MachineSpec, RootDevice};
