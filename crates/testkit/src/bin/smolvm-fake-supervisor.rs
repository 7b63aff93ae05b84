//! `smolvm-fake-supervisor [--agent PATH] --dir <vm dir>`: the production supervisor on the
//! fake backend, for tests (see the `smolvm_testkit` crate). Started by the SDK through a
//! [`smolvm::Launcher`]; never installed.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use smolvm_testkit::FakeBackend;

const USAGE: &str =
    "usage: smolvm-fake-supervisor [--agent PATH] --dir <vm directory>  (started by tests)";

fn main() {
    let mut args = std::env::args_os().skip(1);
    let (mut agent, mut dir) = (None, None);
    while let Some(arg) = args.next() {
        let slot = match arg.to_str() {
            Some("--agent") if agent.is_none() => &mut agent,
            Some("--dir") if dir.is_none() => &mut dir,
            _ => usage(),
        };
        *slot = Some(PathBuf::from(args.next().unwrap_or_else(|| usage())));
    }
    let Some(dir) = dir else { usage() };
    // As the real supervisor: whatever it creates without an explicit mode is private.
    smolvm_sys::process::set_umask(0o077);
    smolvm::supervisor::init_logging();
    let code = smolvm::supervisor::run_with(&dir, &|_data| {
        let agent = match &agent {
            Some(agent) => agent.clone(),
            None => {
                smolvm_testkit::find_agent().map_err(|hint| smolvm_vmm::Error::MissingProgram {
                    program: "smolvm-fake-agent",
                    hint,
                })?
            }
        };
        Ok(Box::new(FakeBackend::new(agent, &dir)))
    });
    std::process::exit(code);
}

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}
