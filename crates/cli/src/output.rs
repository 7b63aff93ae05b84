//! Text and JSON output, and mapping errors to exit codes.

use serde::Serialize;
use serde_json::json;
use smolvm::protocol::ErrorKind as smolvm_protocol_kind;

/// Exit code for invalid input.
pub const EXIT_INVALID: i32 = 2;
/// Exit code when a command timed out (as `timeout(1)`).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code when the sandbox could not be started (as `docker run`).
pub const EXIT_START_FAILED: i32 = 125;

/// Prints a success envelope `{"ok": true, "data": ...}`.
pub fn print_json<T: Serialize>(data: &T) {
    println!("{}", json!({ "ok": true, "data": data }));
}

/// An error the CLI itself raises, with its code, exit code and the command that fixes it.
#[derive(Debug)]
pub struct Failure {
    /// Machine-readable code.
    pub code: &'static str,
    /// Process exit code.
    pub exit: i32,
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

/// A stable machine-readable code, the exit code, and a hint for an error.
fn classify(err: &anyhow::Error) -> (&'static str, i32, Option<String>) {
    if let Some(failure) = err.downcast_ref::<Failure>() {
        return (failure.code, failure.exit, failure.hint.clone());
    }
    let Some(err) = err.downcast_ref::<smolvm::Error>() else {
        return ("error", 1, None);
    };
    use smolvm::Error as E;
    use smolvm::TransferRule;
    match err {
        E::InvalidConfig { .. } | E::InvalidEnv(_) => ("invalid_input", EXIT_INVALID, None),
        E::VmNotRunning { vm_id, state, .. } if state == "paused" => {
            ("vm_not_running", 4, Some(format!("smolvm resume {vm_id}")))
        }
        E::VmNotRunning { vm_id, .. } => {
            ("vm_not_running", 4, Some(format!("smolvm start {vm_id}")))
        }
        E::NotFound { what: "image", .. } => ("not_found", 3, Some("smolvm image ls".into())),
        E::NotFound {
            what: "snapshot", ..
        } => ("not_found", 3, Some("smolvm snapshot ls".into())),
        E::NotFound { .. } => ("not_found", 3, Some("smolvm ls --all".into())),
        E::Timeout { .. } => ("timeout", EXIT_TIMEOUT, None),
        E::Cancelled { .. } => ("cancelled", 130, None),
        E::MissingFile { .. } => (
            "missing_file",
            EXIT_START_FAILED,
            Some("smolvm setup".into()),
        ),
        E::MissingProgram { .. } => (
            "missing_program",
            EXIT_START_FAILED,
            Some("smolvm setup".into()),
        ),
        E::StartFailed { .. } => (
            "start_failed",
            EXIT_START_FAILED,
            Some("smolvm doctor".into()),
        ),
        E::Guest {
            kind: smolvm_protocol_kind::Validation,
            ..
        } => ("invalid_input", EXIT_INVALID, None),
        E::Guest { .. } => ("guest_error", 1, None),
        E::Disconnected { .. } => ("disconnected", 1, None),
        E::Protocol { .. } => ("protocol_error", 1, None),
        E::Io { .. } => ("io_error", 1, None),
        E::Build(_) => ("build_failed", 1, Some("smolvm doctor".into())),
        E::ImageBuild { .. } => ("build_failed", 1, None),
        E::NoSpace { .. } => ("no_space", 1, None),
        // The message already names the path and the fix.
        E::UnsafeDataDir { .. } => ("unsafe_data_dir", 1, None),
        E::Transfer { rule, .. } => match rule {
            TransferRule::UnsafeTree => ("unsafe_tree", 1, None),
            TransferRule::UnsafeUpload => ("unsafe_upload", EXIT_INVALID, None),
            TransferRule::DestinationNotEmpty => (
                "destination_not_empty",
                EXIT_INVALID,
                Some("smolvm cp -r --overwrite NAME:/path DIR".into()),
            ),
            TransferRule::TooLarge => ("too_large", 1, None),
            TransferRule::NoSpace => ("no_space", 1, None),
            TransferRule::Stalled => ("timeout", EXIT_TIMEOUT, None),
        },
    }
}

/// Prints an error (text on stderr, or the JSON envelope on stdout) and returns the exit code.
pub fn report_error(json: bool, err: &anyhow::Error) -> i32 {
    let (code, exit, hint) = classify(err);
    if json {
        println!(
            "{}",
            json!({ "ok": false, "error": { "code": code, "message": format!("{err:#}"), "hint": hint } })
        );
    } else {
        eprintln!("smolvm: error: {err:#}");
        if let Some(hint) = hint {
            eprintln!("hint: try `{hint}`");
        }
    }
    exit
}
