//! SmolVM guest agent.
//!
//! Runs as PID 1 (`init=/init` / `rdinit=/init`): prepares the guest (mounts, hostname), reaps
//! every orphaned process, and serves the host over the virtio-serial port named
//! [`smolvm_protocol::AGENT_PORT_NAME`]. No async runtime: one thread reads frames, each command
//! gets a thread of its own, and a reaper thread collects exit statuses.

mod env;
mod exec;
mod files;
mod flow;
mod identity;
mod init;
mod port;
mod printenv;
mod reaper;
mod server;
mod sys;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Busybox-static has no `printenv`; the image links it to this binary.
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "printenv")
    {
        return printenv::main();
    }
    let pid1 = std::process::id() == 1;
    if pid1 {
        init::prepare_guest();
        if init::cmdline_flag("smolvm.floor") {
            // Boot-floor benchmark image: the kernel is up and userspace ran; reset at once.
            sys::reboot_now();
        }
    }
    // SIGCHLD is blocked in every thread and consumed by the reaper with sigwait, so it must be
    // blocked before any thread starts.
    let reaper = reaper::Reaper::start();
    let port = match port::open_agent_port() {
        Ok(port) => port,
        Err(e) => {
            eprintln!("smolvm-agent: {e}");
            if pid1 {
                // Nothing can reach this guest: power off instead of hanging.
                sys::reboot_now();
            }
            return ExitCode::FAILURE;
        }
    };
    server::serve(port, reaper);
    if pid1 {
        sys::reboot_now();
    }
    ExitCode::SUCCESS
}
