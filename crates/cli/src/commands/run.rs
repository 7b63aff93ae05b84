//! `smolvm run`: a one-off sandbox for one command line.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use smolvm::run::join_command_words;
use smolvm::{Output, RunOptions, Shell, SmolVm, VmConfig};

use crate::cli::RunArgs;
use crate::output::print_json;

/// Converts `--timeout SECS` to a duration, refusing zero, negative and non-finite values.
pub fn timeout_from_secs(secs: Option<f64>) -> Result<Option<Duration>> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => bail!(smolvm::Error::InvalidConfig {
            field: "--timeout",
            reason: format!("{s} is not a positive number of seconds"),
        }),
    }
}

pub fn run(args: RunArgs, json: bool) -> Result<i32> {
    let command = join_command_words(&args.command);
    let options = RunOptions {
        shell: if args.raw { Shell::Raw } else { Shell::Login },
        timeout: timeout_from_secs(args.timeout)?,
        ..RunOptions::default()
    };
    let config = VmConfig {
        vcpu_count: args.size.cpus,
        mem_size_mib: args.size.memory,
        env_vars: super::parse_env_pairs(&args.env)?,
        image: args.image.clone(),
        ..VmConfig::default()
    };
    if command.trim().is_empty() {
        bail!(smolvm::Error::InvalidConfig {
            field: "command",
            reason: "the command is empty; e.g. smolvm run -- echo hi".into()
        });
    }
    let mut vm = SmolVm::new(config)?;
    vm.set_cold(args.cold);
    vm.start()?;
    run_and_report(&vm, &command, &options, json, "vm_id")
}

/// Runs `command` and reports it: with `json`, one envelope carrying the output (the VM's
/// name under `id_key`); otherwise stdout and stderr stream to ours as they arrive. Returns
/// the command's exit code.
pub fn run_and_report(
    vm: &SmolVm,
    command: &str,
    options: &RunOptions,
    json: bool,
    id_key: &str,
) -> Result<i32> {
    if json {
        let result = vm.run_with(command, options)?;
        print_json(&serde_json::json!({
            id_key: vm.vm_id(),
            "exit_code": result.exit_code,
            "stdout": result.stdout_str(),
            "stderr": result.stderr_str(),
        }));
        return Ok(result.exit_code);
    }
    let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr());
    let (code, _) = vm.run_streaming(command, options, &mut |chunk| match chunk {
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
