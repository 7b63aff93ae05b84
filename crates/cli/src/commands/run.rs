//! `smolvm run`: a one-off sandbox for one command line.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Result};
use smolvm::run::join_command_words;
use smolvm::{Output, RunOptions, Shell, SmolVm, VmConfig};

use crate::cli::RunArgs;
use crate::output::print_json;

/// The timeout of a non-interactive `run` or `exec` without `--timeout`: the SDK's `run()`
/// default, so that a command that hangs (or a guest that never lets it end) cannot hold the
/// terminal, or a script calling us, forever.
pub const DEFAULT_TIMEOUT: Duration = smolvm::run::DEFAULT_TIMEOUT;

/// Converts `--timeout SECS` to the command's limit: absent means [`DEFAULT_TIMEOUT`], or no
/// limit for an `interactive` session (a person is at the keyboard and ends it); `0` means
/// no limit. Negative and non-finite values are refused.
pub fn timeout_from_secs(secs: Option<f64>, interactive: bool) -> Result<Option<Duration>> {
    match secs {
        None if interactive => Ok(None),
        None => Ok(Some(DEFAULT_TIMEOUT)),
        Some(0.0) => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => bail!(smolvm::Error::InvalidConfig {
            field: "--timeout",
            reason: format!("{s} is not a number of seconds (use 0 for no limit)"),
        }),
    }
}

pub fn run(args: RunArgs, json: bool) -> Result<i32> {
    let command = join_command_words(&args.command);
    let options = RunOptions {
        shell: if args.raw { Shell::Raw } else { Shell::Login },
        timeout: timeout_from_secs(args.timeout, false)?,
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
/// name under `id_key`; each stream capped at the SDK's 64 MiB, with `*_truncated` flags);
/// otherwise stdout and stderr stream to ours as they arrive, uncapped, since nothing is
/// kept. Returns the command's exit code.
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
            "stdout_truncated": result.stdout_truncated,
            "stderr_truncated": result.stderr_truncated,
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn timeout_of(argv: &[&str]) -> Option<Duration> {
        let cli = Cli::try_parse_from(argv).unwrap();
        match cli.command {
            Command::Run(args) => timeout_from_secs(args.timeout, false).unwrap(),
            Command::Exec(args) => {
                timeout_from_secs(args.timeout, args.interactive || args.tty).unwrap()
            }
            other => panic!("not run/exec: {other:?}"),
        }
    }

    #[test]
    fn run_and_exec_default_to_thirty_seconds_and_zero_means_none() {
        let thirty = Some(Duration::from_secs(30));
        assert_eq!(timeout_of(&["smolvm", "run", "--", "true"]), thirty);
        assert_eq!(timeout_of(&["smolvm", "exec", "box", "--", "true"]), thirty);
        assert_eq!(
            timeout_of(&["smolvm", "run", "--timeout", "0", "--", "true"]),
            None
        );
        assert_eq!(
            timeout_of(&["smolvm", "exec", "--timeout", "2.5", "box", "--", "true"]),
            Some(Duration::from_millis(2500))
        );
    }

    #[test]
    fn interactive_exec_has_no_default_timeout_but_takes_one() {
        assert_eq!(
            timeout_of(&["smolvm", "exec", "-it", "box", "--", "sh"]),
            None
        );
        assert_eq!(
            timeout_of(&["smolvm", "exec", "-i", "box", "--", "cat"]),
            None
        );
        assert_eq!(
            timeout_of(&["smolvm", "exec", "-i", "--timeout", "5", "box", "--", "cat"]),
            Some(Duration::from_secs(5))
        );
    }

    #[test]
    fn negative_and_non_finite_timeouts_are_refused() {
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(timeout_from_secs(Some(bad), false).is_err(), "{bad}");
        }
    }
}
