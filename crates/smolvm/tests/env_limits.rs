//! Environment variables too large to exec are refused up front, and the file is unchanged:
//! one `KEY=value` over Linux's MAX_ARG_STRLEN (128 KiB with its NUL) would make every later
//! login-shell command fail with "Argument list too long".

mod common;

use smolvm_protocol::AgentRequest;
use std::collections::BTreeMap;
use std::time::Duration;

use smolvm::client::Connection;
use smolvm::protocol::{
    EnvValidationError, ErrorKind, Response, MAX_ENV_ENTRY_BYTES, MAX_ENV_TOTAL_BYTES,
};
use smolvm::Error;

fn one(key: &str, value: String) -> BTreeMap<String, String> {
    BTreeMap::from([(key.to_string(), value)])
}

#[test]
fn a_value_over_max_arg_strlen_is_refused_and_one_just_under_works() {
    let vm = common::vm();
    vm.set_env_vars(&one("KEEP", "me".into()), true).unwrap();
    let before = vm.list_env_vars().unwrap();

    // "BIG=" + value + NUL is one byte over the limit.
    let over = "x".repeat(MAX_ENV_ENTRY_BYTES - "BIG=".len());
    let err = vm.set_env_vars(&one("BIG", over), true).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidEnv(EnvValidationError::ValueTooLong { .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("Argument list too long"), "{err}");
    assert_eq!(vm.list_env_vars().unwrap(), before, "file unchanged");
    assert_eq!(vm.run("echo still fine").unwrap().output(), "still fine");

    // Exactly at the limit: stored, exported, and external programs still start.
    let fits = "y".repeat(MAX_ENV_ENTRY_BYTES - "BIG=".len() - 1);
    vm.set_env_vars(&one("BIG", fits.clone()), true).unwrap();
    let result = vm
        .run("printf %s \"$BIG\" | wc -c; /usr/bin/env | grep -c '^BIG='; echo $KEEP")
        .unwrap();
    assert_eq!(result.exit_code, 0, "{}", result.stderr_str());
    assert_eq!(
        result.stdout_str(),
        format!("{}\n1\nme\n", fits.len()),
        "{}",
        result.stderr_str()
    );
}

#[test]
fn the_merged_set_must_fit_the_budget_and_the_agent_refuses_it() {
    let vm = common::vm();
    // Each batch is well within the budget on its own; only merged do they exceed it, which
    // only the agent (holding the current set) can see.
    let value = "v".repeat(120 * 1024);
    let first: BTreeMap<String, String> =
        (0..8).map(|i| (format!("A{i}"), value.clone())).collect();
    vm.set_env_vars(&first, true).unwrap();
    let before = vm.list_env_vars().unwrap();
    let err = vm.set_env_vars(&one("B", value.clone()), true).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Guest {
                kind: ErrorKind::Validation,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&MAX_ENV_TOTAL_BYTES.to_string()),
        "{err}"
    );
    assert_eq!(vm.list_env_vars().unwrap(), before, "file unchanged");
    // Replacing instead of merging is judged on the new set alone.
    vm.set_env_vars(&one("B", value), false).unwrap();
    assert_eq!(vm.run("echo ${#B}").unwrap().output(), "122880");

    // A single batch over the budget is refused by the SDK before it is sent.
    let huge: BTreeMap<String, String> = (0..9)
        .map(|i| (format!("C{i}"), "c".repeat(120 * 1024)))
        .collect();
    let err = vm.set_env_vars(&huge, false).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidEnv(EnvValidationError::SetTooLarge { .. })
        ),
        "{err:?}"
    );
    assert_eq!(vm.list_env_vars().unwrap().len(), 1);
}

#[test]
fn the_agent_refuses_what_a_client_that_skips_validation_sends() {
    let vm = common::vm();
    vm.set_env_vars(&one("KEEP", "me".into()), true).unwrap();
    let before = vm.list_env_vars().unwrap();
    // A second, raw connection to the supervisor: nothing of the SDK's checks runs.
    let raw = Connection::connect(&vm.paths().api_socket(), vm.vm_id()).unwrap();
    let timeout = Some(Duration::from_secs(60));
    let too_long = AgentRequest::EnvSet {
        vars: one("BIG", "x".repeat(MAX_ENV_ENTRY_BYTES)),
        merge: true,
    };
    let too_many = AgentRequest::EnvSet {
        vars: (0..9)
            .map(|i| (format!("C{i}"), "c".repeat(120 * 1024)))
            .collect(),
        merge: false,
    };
    for request in [too_long, too_many] {
        match raw.call(&request, timeout).unwrap() {
            Response::Error {
                kind: ErrorKind::Validation,
                message,
            } => assert!(message.contains("too"), "{message}"),
            other => panic!("{} accepted: {other:?}", request.log_summary()),
        }
    }
    assert_eq!(vm.list_env_vars().unwrap(), before, "file unchanged");
    assert_eq!(vm.run("echo $KEEP").unwrap().output(), "me");
}
