//! `smolvm exec`: a command line in a running sandbox, output streamed as it comes.

use anyhow::Result;
use smolvm::run::join_command_words;
use smolvm::{RunOptions, Shell, SmolVm};

use crate::cli::ExecArgs;

pub fn exec(args: ExecArgs, json: bool) -> Result<i32> {
    let command = join_command_words(&args.command);
    let options = RunOptions {
        shell: if args.raw { Shell::Raw } else { Shell::Login },
        timeout: super::run::timeout_from_secs(args.timeout, args.interactive || args.tty)?,
        env: super::parse_env_pairs(&args.env)?,
        ..RunOptions::default()
    };
    let vm = SmolVm::attach(&args.name)?;
    if args.interactive || args.tty {
        return super::shell::interactive(&vm, &command, &options, args.tty);
    }
    super::run::run_and_report(&vm, &command, &options, json, "name")
}
