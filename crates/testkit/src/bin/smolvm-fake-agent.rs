//! `smolvm-fake-agent --host-mode --channel-fd FD --state-dir DIR`: the guest agent library's
//! host mode as a binary of this crate, so that the fast tier always runs the agent built
//! with it. Nothing else: no guest path, no `printenv`.

use std::process::ExitCode;

use smolvm_agent::host::{self, Invocation};

fn main() -> ExitCode {
    match host::parse_args(std::env::args_os().skip(1)) {
        Ok(Invocation::Host(args)) => host::main(args),
        Ok(Invocation::Guest) => {
            eprintln!("smolvm-fake-agent: host mode only\n{}", host::USAGE);
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("smolvm-fake-agent: {e}\n{}", host::USAGE);
            ExitCode::from(2)
        }
    }
}
