//! Every [`Error`] variant has a code; hints and messages stay as they were.

use super::*;

/// One error of each variant (and of each transfer rule and guest kind that changes the code),
/// with the code it must have.
fn samples() -> Vec<(Error, &'static str)> {
    let transfer = |rule| Error::Transfer {
        what: "download of /out from VM vm-1".into(),
        rule,
        reason: "r".into(),
        hint: "h".into(),
    };
    let guest = |kind| Error::Guest {
        vm_id: "vm-1".into(),
        kind,
        message: "m".into(),
    };
    vec![
        (
            Error::InvalidConfig {
                field: "vcpu_count",
                reason: "r".into(),
            },
            "invalid_input",
        ),
        (
            Error::InvalidEnv(smolvm_protocol::validate_env_key("1X").unwrap_err()),
            "invalid_input",
        ),
        (
            Error::AlreadyExists {
                what: Resource::Sandbox,
                name: "web".into(),
                hint: "h".into(),
            },
            "already_exists",
        ),
        (
            Error::VmNotRunning {
                action: "Cannot run command",
                vm_id: "vm-1".into(),
                state: SandboxState::Paused,
            },
            "vm_not_running",
        ),
        (
            Error::Timeout {
                command: "sleep 9".into(),
                timeout: Duration::from_secs(1),
                vm_id: "vm-1".into(),
            },
            "timeout",
        ),
        (
            Error::Cancelled {
                command: "c".into(),
                vm_id: "vm-1".into(),
            },
            "cancelled",
        ),
        (
            Error::NotFound {
                what: "sandbox",
                name: "nope".into(),
                hint: "h".into(),
            },
            "not_found",
        ),
        (
            Error::MissingFile {
                what: "guest kernel",
                path: "/k".into(),
                hint: "h".into(),
            },
            "missing_file",
        ),
        (
            Error::MissingProgram {
                program: "qemu-img",
                hint: "h".into(),
            },
            "missing_program",
        ),
        (
            Error::StartFailed {
                vm_id: "vm-1".into(),
                reason: "r".into(),
            },
            "start_failed",
        ),
        (guest(ErrorKind::Validation), "invalid_input"),
        (guest(ErrorKind::Spawn), "guest_error"),
        (
            Error::Disconnected {
                vm_id: "vm-1".into(),
                reason: "r".into(),
            },
            "disconnected",
        ),
        (
            Error::Protocol {
                vm_id: "vm-1".into(),
                source: ProtocolError::UnknownKind(9),
            },
            "protocol_error",
        ),
        (
            Error::io("reading x", std::io::Error::other("boom")),
            "io_error",
        ),
        (Error::Build("b".into()), "build_failed"),
        (
            Error::ImageBuild {
                image: "debian".into(),
                step: "mkfs.ext4",
                reason: "r".into(),
            },
            "build_failed",
        ),
        (
            Error::NoSpace {
                what: "image debian".into(),
                dir: "/d".into(),
                needed_mib: 2,
                available_mib: 1,
            },
            "no_space",
        ),
        (
            Error::UnsafeDataDir {
                path: "/d".into(),
                problem: "p".into(),
                fix: "chmod 700 /d".into(),
            },
            "unsafe_data_dir",
        ),
        (transfer(TransferRule::UnsafeTree), "unsafe_tree"),
        (transfer(TransferRule::UnsafeUpload), "unsafe_upload"),
        (
            transfer(TransferRule::DestinationNotEmpty),
            "destination_not_empty",
        ),
        (transfer(TransferRule::TooLarge), "too_large"),
        (transfer(TransferRule::NoSpace), "no_space"),
        (transfer(TransferRule::Stalled), "timeout"),
    ]
}

/// The variant's position; a new variant does not compile here until it is numbered, and the
/// test below fails until [`samples`] has one of it.
fn variant(err: &Error) -> usize {
    match err {
        Error::InvalidConfig { .. } => 0,
        Error::InvalidEnv(_) => 1,
        Error::AlreadyExists { .. } => 2,
        Error::VmNotRunning { .. } => 3,
        Error::Timeout { .. } => 4,
        Error::Cancelled { .. } => 5,
        Error::NotFound { .. } => 6,
        Error::MissingFile { .. } => 7,
        Error::MissingProgram { .. } => 8,
        Error::StartFailed { .. } => 9,
        Error::Guest { .. } => 10,
        Error::Disconnected { .. } => 11,
        Error::Protocol { .. } => 12,
        Error::Io { .. } => 13,
        Error::Build(_) => 14,
        Error::ImageBuild { .. } => 15,
        Error::NoSpace { .. } => 16,
        Error::UnsafeDataDir { .. } => 17,
        Error::Transfer { .. } => 18,
    }
}

const VARIANTS: usize = 19;

#[test]
fn every_variant_has_its_code() {
    let samples = samples();
    let mut seen = [false; VARIANTS];
    for (err, code) in &samples {
        seen[variant(err)] = true;
        assert_eq!(err.code().as_str(), *code, "{err:?}");
        assert!(ErrorCode::ALL.contains(&err.code()));
    }
    let missing: Vec<usize> = (0..VARIANTS).filter(|i| !seen[*i]).collect();
    assert!(missing.is_empty(), "variants without a sample: {missing:?}");
    // Every code is reachable from some error.
    for code in ErrorCode::ALL {
        assert!(
            samples.iter().any(|(err, _)| err.code() == *code),
            "{code} is never used"
        );
    }
}

#[test]
fn hints_are_the_what_to_do_part_of_the_message() {
    for (err, _) in samples() {
        if let Some(hint) = err.hint() {
            assert!(err.to_string().ends_with(hint), "{err}");
        }
    }
    let no_space = samples()
        .into_iter()
        .find(|(e, _)| matches!(e, Error::NoSpace { .. }))
        .unwrap()
        .0;
    assert_eq!(
        no_space.hint(),
        Some("free some space or point SMOLVM_DATA_DIR at a larger disk")
    );
    let fix = Error::UnsafeDataDir {
        path: "/d".into(),
        problem: "mode 755".into(),
        fix: "chmod 700 /d".into(),
    };
    assert_eq!(fix.hint(), Some("chmod 700 /d"));
    assert_eq!(Error::Build("b".into()).hint(), None);
}

#[test]
fn taken_names_read_as_before() {
    let snapshot = Error::AlreadyExists {
        what: Resource::Snapshot,
        name: "s1".into(),
        hint: "pick another id or remove it with `smolvm snapshot rm s1`".into(),
    };
    assert_eq!(
        snapshot.to_string(),
        "invalid snapshot_id: a snapshot named \"s1\" already exists; pick another id or \
         remove it with `smolvm snapshot rm s1`"
    );
    let not_running = Error::VmNotRunning {
        action: "Cannot run command",
        vm_id: "vm-1".into(),
        state: SandboxState::Stopped,
    };
    assert_eq!(
        not_running.to_string(),
        "Cannot run command: VM is stopped (VM vm-1)"
    );
}
