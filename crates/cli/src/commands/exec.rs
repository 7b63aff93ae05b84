//! `smolvm exec`: a command line in a running sandbox, output streamed as it comes.

use std::io::Write;

use anyhow::Result;
use smolvm::run::join_command_words;
use smolvm::{Output, RunOptions, Shell, SmolVm};

use crate::cli::ExecArgs;
use crate::output::print_json;

pub fn exec(args: ExecArgs, json: bool) -> Result<i32> {
    let command = join_command_words(&args.command);
    let options = RunOptions {
        shell: if args.raw { Shell::Raw } else { Shell::Login },
        timeout: super::run::timeout_from_secs(args.timeout)?,
        env: super::parse_env_pairs(&args.env)?,
        ..RunOptions::default()
    };
    let vm = SmolVm::attach(&args.name)?;
    if args.interactive || args.tty {
        return super::shell::interactive(&vm, &command, &options, args.tty);
    }
    if json {
        let result = vm.run_with(&command, &options)?;
        print_json(&serde_json::json!({
            "name": vm.vm_id(),
            "exit_code": result.exit_code,
            "stdout": result.stdout_str(),
            "stderr": result.stderr_str(),
        }));
        return Ok(result.exit_code);
    }
    let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr());
    let (code, _) = vm.run_streaming(&command, &options, &mut |chunk| match chunk {
        Output::Stdout(bytes) => {
            let _ = stdout.write_all(bytes);
            let _ = stdout.flush();
        }
        Output::Stderr(bytes) => {
            let _ = stderr.write_all(bytes);
        }
    })?;
    Ok(code)
}
