//! Text and JSON output, and mapping errors to exit codes.

use serde::Serialize;
use serde_json::json;

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

/// A stable machine-readable code, the exit code, and a hint for an error.
fn classify(err: &anyhow::Error) -> (&'static str, i32, Option<String>) {
    let Some(err) = err.downcast_ref::<smolvm::Error>() else {
        return ("error", 1, None);
    };
    use smolvm::Error as E;
    match err {
        E::InvalidConfig { .. } | E::InvalidEnv(_) => ("invalid_input", EXIT_INVALID, None),
        E::VmNotRunning { .. } => ("vm_not_running", 1, None),
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
        E::Guest { .. } => ("guest_error", 1, None),
        E::Disconnected { .. } => ("disconnected", 1, None),
        E::Protocol { .. } => ("protocol_error", 1, None),
        E::Io { .. } => ("io_error", 1, None),
        E::Build(_) => ("build_failed", 1, Some("smolvm doctor".into())),
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
