//! Text and JSON output, and mapping errors to exit codes.

use serde::Serialize;
use serde_json::json;
use smolvm::{ErrorCode, SandboxState, TransferRule};

/// Exit code of an error without a more specific one.
pub const EXIT_ERROR: i32 = 1;
/// Exit code for invalid input.
pub const EXIT_INVALID: i32 = 2;
/// Exit code when there is no sandbox (snapshot, image) by the name given.
pub const EXIT_NOT_FOUND: i32 = 3;
/// Exit code when the sandbox is not running (or is, for `rm` without `--force`).
pub const EXIT_NOT_RUNNING: i32 = 4;
/// Exit code when a command timed out (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code when the sandbox could not be started (as `docker run`).
pub const EXIT_START_FAILED: i32 = 125;
/// Exit code when the command was interrupted or cancelled (as after SIGINT).
pub const EXIT_INTERRUPTED: i32 = 130;

/// Prints a success envelope `{"ok": true, "data": ...}`.
pub fn print_json<T: Serialize>(data: &T) {
    println!("{}", json!({ "ok": true, "data": data }));
}

/// The `code` of a JSON error object: one of the SDK's [`ErrorCode`]s, or one of the errors
/// the CLI raises itself. The exit code is looked up by it ([`Code::exit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// An SDK error's code.
    Sdk(ErrorCode),
    /// `image rm` of an image that sandboxes use, without `--force`.
    ImageInUse,
    /// `start` of a paused sandbox.
    SandboxPaused,
    /// `rm` of a running or paused sandbox, without `--force`.
    SandboxRunning,
    /// Anything that is not an SDK error.
    Other,
}

/// The process exit code of each SDK error code; `None` for a code this table misses (a
/// test checks that none is missed).
fn sdk_exit(code: ErrorCode) -> Option<i32> {
    use ErrorCode as C;
    Some(match code {
        C::InvalidInput | C::AlreadyExists | C::UnsafeUpload | C::DestinationNotEmpty => {
            EXIT_INVALID
        }
        C::NotFound => EXIT_NOT_FOUND,
        C::VmNotRunning => EXIT_NOT_RUNNING,
        C::Timeout => EXIT_TIMEOUT,
        C::Cancelled => EXIT_INTERRUPTED,
        C::MissingFile | C::MissingProgram | C::StartFailed => EXIT_START_FAILED,
        C::GuestError
        | C::Disconnected
        | C::ProtocolError
        | C::IoError
        | C::BuildFailed
        | C::NoSpace
        | C::UnsafeDataDir
        | C::UnsafeTree
        | C::TooLarge => EXIT_ERROR,
        _ => return None,
    })
}

impl Code {
    /// The stable name in the JSON error object.
    pub fn as_str(self) -> &'static str {
        match self {
            // The CLI has always reported a taken name as invalid input.
            Code::Sdk(ErrorCode::AlreadyExists) => ErrorCode::InvalidInput.as_str(),
            Code::Sdk(code) => code.as_str(),
            Code::ImageInUse => "image_in_use",
            Code::SandboxPaused => "sandbox_paused",
            Code::SandboxRunning => "sandbox_running",
            Code::Other => "error",
        }
    }

    /// The process exit code.
    pub fn exit(self) -> i32 {
        match self {
            Code::Sdk(code) => sdk_exit(code).unwrap_or(EXIT_ERROR),
            Code::SandboxPaused | Code::SandboxRunning => EXIT_NOT_RUNNING,
            Code::ImageInUse | Code::Other => EXIT_ERROR,
        }
    }
}

/// An error the CLI itself raises, with its code and the command that fixes it.
#[derive(Debug)]
pub struct Failure {
    /// Machine-readable code; the exit code follows from it.
    pub code: Code,
    /// What went wrong.
    pub message: String,
    /// The command that fixes it.
    pub hint: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// The command that fixes an SDK error, if there is one to suggest.
fn sdk_hint(err: &smolvm::Error) -> Option<String> {
    use smolvm::Error as E;
    Some(match err {
        E::VmNotRunning {
            vm_id,
            state: SandboxState::Paused,
            ..
        } => format!("smolvm resume {vm_id}"),
        E::VmNotRunning { vm_id, .. } => format!("smolvm start {vm_id}"),
        E::NotFound { what: "image", .. } => "smolvm image ls".into(),
        E::NotFound {
            what: "snapshot", ..
        } => "smolvm snapshot ls".into(),
        E::NotFound { .. } => "smolvm ls --all".into(),
        E::MissingFile { .. } | E::MissingProgram { .. } => "smolvm setup".into(),
        E::StartFailed { .. } | E::Build(_) => "smolvm doctor".into(),
        E::Transfer {
            rule: TransferRule::DestinationNotEmpty,
            ..
        } => "smolvm cp -r --overwrite NAME:/path DIR".into(),
        // The others' messages already say what to do, or there is no command for it.
        _ => return None,
    })
}

/// A stable machine-readable code and a hint for an error.
fn classify(err: &anyhow::Error) -> (Code, Option<String>) {
    if let Some(failure) = err.downcast_ref::<Failure>() {
        return (failure.code, failure.hint.clone());
    }
    match err.downcast_ref::<smolvm::Error>() {
        Some(err) => (Code::Sdk(err.code()), sdk_hint(err)),
        None => (Code::Other, None),
    }
}

/// The JSON error object of an error.
fn error_object(code: Code, message: String, hint: Option<String>) -> serde_json::Value {
    json!({ "ok": false, "error": { "code": code.as_str(), "message": message, "hint": hint } })
}

/// Prints an error (text on stderr, or the JSON envelope on stdout) and returns the exit code.
pub fn report_error(json: bool, err: &anyhow::Error) -> i32 {
    let (code, hint) = classify(err);
    if json {
        println!("{}", error_object(code, format!("{err:#}"), hint));
    } else {
        eprintln!("smolvm: error: {err:#}");
        if let Some(hint) = hint {
            eprintln!("hint: try `{hint}`");
        }
    }
    code.exit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_code_has_an_exit_code() {
        for code in ErrorCode::ALL {
            assert!(sdk_exit(*code).is_some(), "{code} has no exit code");
        }
    }

    /// The (JSON code, exit code) of every SDK code, as the CLI has always reported them.
    #[test]
    fn codes_and_exit_codes_are_stable() {
        let table = [
            ("invalid_input", "invalid_input", 2),
            ("already_exists", "invalid_input", 2),
            ("vm_not_running", "vm_not_running", 4),
            ("not_found", "not_found", 3),
            ("timeout", "timeout", 124),
            ("cancelled", "cancelled", 130),
            ("missing_file", "missing_file", 125),
            ("missing_program", "missing_program", 125),
            ("start_failed", "start_failed", 125),
            ("guest_error", "guest_error", 1),
            ("disconnected", "disconnected", 1),
            ("protocol_error", "protocol_error", 1),
            ("io_error", "io_error", 1),
            ("build_failed", "build_failed", 1),
            ("no_space", "no_space", 1),
            ("unsafe_data_dir", "unsafe_data_dir", 1),
            ("unsafe_tree", "unsafe_tree", 1),
            ("unsafe_upload", "unsafe_upload", 2),
            ("destination_not_empty", "destination_not_empty", 2),
            ("too_large", "too_large", 1),
        ];
        assert_eq!(table.len(), ErrorCode::ALL.len());
        for (code, (name, wire, exit)) in ErrorCode::ALL.iter().zip(table) {
            assert_eq!(code.as_str(), name);
            assert_eq!(
                (Code::Sdk(*code).as_str(), Code::Sdk(*code).exit()),
                (wire, exit)
            );
        }
        for (code, wire, exit) in [
            (Code::ImageInUse, "image_in_use", 1),
            (Code::SandboxPaused, "sandbox_paused", 4),
            (Code::SandboxRunning, "sandbox_running", 4),
            (Code::Other, "error", 1),
        ] {
            assert_eq!((code.as_str(), code.exit()), (wire, exit));
        }
    }

    fn object(err: anyhow::Error) -> (serde_json::Value, i32) {
        let (code, hint) = classify(&err);
        (error_object(code, format!("{err:#}"), hint), code.exit())
    }

    #[test]
    fn json_error_objects() {
        let paused = smolvm::Error::VmNotRunning {
            action: "Cannot run command",
            vm_id: "web".into(),
            state: SandboxState::Paused,
        };
        assert_eq!(
            object(paused.into()),
            (
                json!({ "ok": false, "error": {
                    "code": "vm_not_running",
                    "message": "Cannot run command: VM is paused (VM web)",
                    "hint": "smolvm resume web",
                }}),
                4
            )
        );
        let taken = smolvm::Error::AlreadyExists {
            what: smolvm::Resource::Sandbox,
            name: "web".into(),
            hint: "choose another name or remove it with `smolvm rm web`".into(),
        };
        assert_eq!(
            object(taken.into()),
            (
                json!({ "ok": false, "error": {
                    "code": "invalid_input",
                    "message": "invalid vm_id: a sandbox named \"web\" already exists; choose \
                                another name or remove it with `smolvm rm web`",
                    "hint": null,
                }}),
                2
            )
        );
        let missing = smolvm::Error::NotFound {
            what: "snapshot",
            name: "s1".into(),
            hint: "list them with `smolvm snapshot ls`".into(),
        };
        let (v, exit) = object(missing.into());
        assert_eq!(
            (&v["error"]["code"], &v["error"]["hint"], exit),
            (&json!("not_found"), &json!("smolvm snapshot ls"), 3)
        );
        let running = Failure {
            code: Code::SandboxRunning,
            message: "sandbox web is running".into(),
            hint: Some("smolvm rm --force web".into()),
        };
        let (v, exit) = object(running.into());
        assert_eq!(
            (&v["error"]["code"], &v["error"]["hint"], exit),
            (
                &json!("sandbox_running"),
                &json!("smolvm rm --force web"),
                4
            )
        );
        let (v, exit) = object(anyhow::anyhow!("something else"));
        assert_eq!((&v["error"]["code"], exit), (&json!("error"), 1));
    }
}
