//! SmolVM guest agent.
//!
//! Runs as PID 1 (`init=/init` / `rdinit=/init`): prepares the guest (mounts, hostname), reaps
//! every orphaned process, and serves the host over the virtio-serial port named
//! [`smolvm_protocol::AGENT_PORT_NAME`]. Outside a guest, `--host-mode` runs it as a test
//! double over an inherited socket (see [`smolvm_agent::host`]); as PID 1 no flag is parsed.

use std::process::ExitCode;

use smolvm_agent::host::{self, Invocation};
use smolvm_agent::{guest, Ended, Options, Reaper};

fn main() -> ExitCode {
    // Busybox-static has no `printenv`; the image links it to this binary.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "printenv")
    {
        return smolvm_agent::printenv::main();
    }
    let pid1 = std::process::id() == 1;
    if !pid1 {
        match host::parse_args(std::env::args_os().skip(1)) {
            Ok(Invocation::Guest) => {}
            Ok(Invocation::Host(args)) => return host::main(args),
            Err(e) => {
                eprintln!("smolvm-agent: {e}\n{}", host::USAGE);
                return ExitCode::from(2);
            }
        }
    }
    if pid1 {
        guest::prepare();
        if guest::cmdline_flag("smolvm.floor") {
            // Boot-floor benchmark image: the kernel is up and userspace ran; reset at once.
            guest::reboot_now();
        }
    }
    // SIGCHLD is blocked in every thread and consumed by the reaper with sigwait, so it must be
    // blocked before any thread starts.
    let reaper = Reaper::start();
    let port = match guest::open_agent_port() {
        Ok(port) => port,
        Err(e) => {
            eprintln!("smolvm-agent: {e}");
            if pid1 {
                // Nothing can reach this guest: power off instead of hanging.
                guest::reboot_now();
            }
            return ExitCode::FAILURE;
        }
    };
    let ended = match port.try_clone() {
        Ok(writer) => {
            smolvm_agent::serve(guest::PortReader(port), writer, reaper, &Options::guest())
        }
        Err(e) => {
            eprintln!("smolvm-agent: cannot duplicate the port: {e}");
            Ended::ChannelError
        }
    };
    if pid1 {
        if ended == Ended::Shutdown {
            guest::power_off();
        }
        guest::reboot_now();
    }
    ExitCode::SUCCESS
}
