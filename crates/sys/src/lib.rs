//! Host helpers shared by every SmolVM crate, so that each is written once: private and
//! atomic files and locks ([`fs`]), other processes ([`process`]) and randomness
//! ([`random`]). The other crates hold no system-call wrappers of their own for these.

pub mod fs;
pub mod process;
pub mod random;
