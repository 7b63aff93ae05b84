//! Running commands and managing environment variables in a running VM.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use smolvm_protocol::{
    validate_env_key, validate_env_set, validate_env_value, AgentRequest, ErrorKind, ExecRequest,
    FrameKind, Response, TtySize,
};

use super::{SandboxState, SmolVm, CANCEL_POLL, TIMEOUT_SLACK};
use crate::error::{Error, Result};
use crate::run::{CappedBuffer, CommandResult, Output, RunOptions};

impl SmolVm {
    /// Runs `command` in a login shell with the default timeout (30 s).
    pub fn run(&self, command: &str) -> Result<CommandResult> {
        self.run_with(command, &RunOptions::default())
    }

    /// Runs `command` with `options`, collecting its output: at most
    /// [`RunOptions::max_output`] bytes of each stream are kept (64 MiB by default); output
    /// past that is read and dropped, so the command still runs to its end, and the result's
    /// `stdout_truncated` / `stderr_truncated` says so.
    pub fn run_with(&self, command: &str, options: &RunOptions) -> Result<CommandResult> {
        let mut stdout = CappedBuffer::new(options.max_output);
        let mut stderr = CappedBuffer::new(options.max_output);
        let (exit_code, guest_time) =
            self.run_streaming(command, options, &mut |chunk| match chunk {
                Output::Stdout(b) => stdout.push(b),
                Output::Stderr(b) => stderr.push(b),
            })?;
        let (stdout, stdout_truncated) = stdout.finish();
        let (stderr, stderr_truncated) = stderr.finish();
        Ok(CommandResult {
            exit_code,
            stdout,
            stderr,
            stdout_truncated,
            stderr_truncated,
            guest_time,
        })
    }

    /// Runs `command`, handing each piece of output to `sink` as it arrives. Returns the exit
    /// code and the guest-side run time. Nothing is buffered here, so there is no output cap:
    /// `sink` decides what to keep.
    pub fn run_streaming(
        &self,
        command: &str,
        options: &RunOptions,
        sink: &mut dyn FnMut(Output<'_>),
    ) -> Result<(i32, Duration)> {
        validate_run(command, options)?;
        let conn = self.conn("Cannot run command")?;
        let call = conn.start_request(&exec_request(command, options, false, None))?;
        let deadline = options.timeout.map(|t| Instant::now() + t + TIMEOUT_SLACK);
        let kill = || call.send(FrameKind::Signal, libc::SIGKILL.to_le_bytes().to_vec());
        loop {
            // With a cancel token, wake up regularly to look at it.
            let wake = match &options.cancel {
                Some(_) => Some(deadline.map_or(Instant::now() + CANCEL_POLL, |d| {
                    d.min(Instant::now() + CANCEL_POLL)
                })),
                None => deadline,
            };
            let frame = call.next(wake)?;
            if options.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                let _ = kill();
                return Err(Error::Cancelled {
                    command: command.into(),
                    vm_id: self.config.vm_id.clone(),
                });
            }
            let Some(frame) = frame else {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    let _ = kill();
                    return Err(self.timeout_error(command, options));
                }
                continue;
            };
            match frame.kind {
                FrameKind::Stdout => sink(Output::Stdout(&frame.payload)),
                FrameKind::Stderr => sink(Output::Stderr(&frame.payload)),
                FrameKind::Response => {
                    let response = frame.to_response().map_err(|source| Error::Protocol {
                        vm_id: self.config.vm_id.clone(),
                        source,
                    })?;
                    return match response {
                        Response::Exited(status) if status.timed_out => {
                            Err(self.timeout_error(command, options))
                        }
                        Response::Exited(status) => {
                            let code = status
                                .code
                                .unwrap_or_else(|| 128 + status.signal.unwrap_or(0));
                            Ok((code, Duration::from_micros(status.guest_micros)))
                        }
                        other => Err(self.unexpected(other)),
                    };
                }
                _ => {}
            }
        }
    }

    fn timeout_error(&self, command: &str, options: &RunOptions) -> Error {
        Error::Timeout {
            command: command.into(),
            timeout: options.timeout.unwrap_or_default(),
            vm_id: self.config.vm_id.clone(),
        }
    }

    pub(crate) fn unexpected(&self, response: Response) -> Error {
        match response {
            Response::Error {
                kind: ErrorKind::Paused,
                ..
            } => self.not_running(
                "Cannot reach the guest (resume it first)",
                SandboxState::Paused,
            ),
            Response::Error {
                kind: ErrorKind::VmNotRunning,
                message,
            } => Error::Disconnected {
                vm_id: self.config.vm_id.clone(),
                reason: message,
            },
            Response::Error { kind, message } => Error::Guest {
                vm_id: self.config.vm_id.clone(),
                kind,
                message,
            },
            other => Error::Guest {
                vm_id: self.config.vm_id.clone(),
                kind: ErrorKind::Internal,
                message: format!("unexpected answer {other:?}"),
            },
        }
    }

    fn env_call(&self, request: &AgentRequest) -> Result<Response> {
        let conn = self.conn("Cannot manage environment variables")?;
        conn.call(request, Some(Duration::from_secs(60)))
    }

    /// Sets environment variables for login shells (merged into the current set unless
    /// `merge` is false). Returns the sorted names of all variables present afterwards.
    /// The whole batch is validated first: an invalid key or value, a `KEY=value` over
    /// [`smolvm_protocol::MAX_ENV_ENTRY_BYTES`], or a resulting set over
    /// [`smolvm_protocol::MAX_ENV_TOTAL_BYTES`] changes nothing.
    pub fn set_env_vars(
        &self,
        vars: &BTreeMap<String, String>,
        merge: bool,
    ) -> Result<Vec<String>> {
        for (key, value) in vars {
            validate_env_key(key)?;
            validate_env_value(key, value)?;
        }
        // A merge only adds to the batch, so a batch over the budget is refused here without a
        // round trip; whether the merged set fits is the agent's check, which knows the set.
        validate_env_set(vars)?;
        match self.env_call(&AgentRequest::EnvSet {
            vars: vars.clone(),
            merge,
        })? {
            Response::EnvKeys { keys } => Ok(keys),
            other => Err(self.unexpected(other)),
        }
    }

    /// The managed environment variables (never system ones such as PATH).
    pub fn list_env_vars(&self) -> Result<BTreeMap<String, String>> {
        match self.env_call(&AgentRequest::EnvList)? {
            Response::EnvVars { vars } => Ok(vars),
            other => Err(self.unexpected(other)),
        }
    }

    /// Removes `keys`; returns the removed variables that existed, with their old values.
    pub fn unset_env_vars<S: AsRef<str>>(&self, keys: &[S]) -> Result<BTreeMap<String, String>> {
        let keys = keys.iter().map(|k| k.as_ref().to_string()).collect();
        match self.env_call(&AgentRequest::EnvUnset { keys })? {
            Response::EnvVars { vars } => Ok(vars),
            other => Err(self.unexpected(other)),
        }
    }
}

/// The agent request that runs `command` with `options`.
pub(crate) fn exec_request(
    command: &str,
    options: &RunOptions,
    stdin: bool,
    tty: Option<TtySize>,
) -> AgentRequest {
    AgentRequest::Exec(ExecRequest {
        command: command.to_string(),
        shell: options.shell,
        env: options.env.clone(),
        cwd: options.cwd.clone(),
        timeout_ms: options.timeout.map(|t| t.as_millis().max(1) as u64),
        stdin: stdin || tty.is_some(),
        tty,
    })
}

/// Refuses a command that cannot run, before anything is sent.
pub(crate) fn validate_run(command: &str, options: &RunOptions) -> Result<()> {
    if command.trim().is_empty() {
        return Err(Error::InvalidConfig {
            field: "command",
            reason: "the command is empty; pass a shell command line".into(),
        });
    }
    if command.contains('\0') {
        return Err(Error::InvalidConfig {
            field: "command",
            reason: "the command contains a NUL byte".into(),
        });
    }
    if options.timeout == Some(Duration::ZERO) {
        return Err(Error::InvalidConfig {
            field: "timeout",
            reason:
                "a timeout of 0 would kill every command at once; use a positive timeout or none"
                    .into(),
        });
    }
    for (key, value) in &options.env {
        validate_env_key(key)?;
        validate_env_value(key, value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_command_and_zero_timeout_are_refused() {
        let err = validate_run("  ", &RunOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("command is empty"), "{err}");
        let err = validate_run(
            "true",
            &RunOptions::default().with_timeout(Some(Duration::ZERO)),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("timeout"), "{err}");
        assert!(validate_run("true", &RunOptions::default().with_timeout(None)).is_ok());
    }
}
