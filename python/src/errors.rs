//! Turning SDK errors into the exceptions of `smolvm.exceptions`.
//!
//! The exception classes are plain Python (so that `ValidationError` can be both a
//! `SmolVMError` and a `ValueError`); this module looks them up once and raises them with the
//! SDK's message and a `details` dict of the facts the message is made of.

use std::path::Path;

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};
use smolvm::{Error, ErrorCode, Resource, TransferRule};
use smolvm_protocol::ErrorKind;

/// The exception classes raised by the extension, in `smolvm.exceptions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// `SmolVMError`, the base class.
    Base,
    /// `ValidationError` (a `ValueError` too).
    Validation,
    /// `VMNotRunningError`.
    NotRunning,
    /// `VMAlreadyExistsError`.
    AlreadyExists,
    /// `VMNotFoundError`.
    NotFound,
    /// `OperationTimeoutError` (a `TimeoutError` too).
    Timeout,
    /// `CommandCancelledError`.
    Cancelled,
    /// `HostError`: a host program or file is missing.
    Host,
    /// `ImageError`: the guest kernel or image is missing.
    Image,
    /// `VMStartError`.
    Start,
    /// `VMConnectionError`: the connection to the VM broke.
    Connection,
    /// `GuestError`: the guest agent refused or failed.
    Guest,
    /// `SmolVMFileNotFoundError` (a `FileNotFoundError` too).
    FileNotFound,
    /// `SnapshotNotFoundError` (a `VMNotFoundError` too).
    SnapshotNotFound,
}

impl Class {
    fn name(self) -> &'static str {
        match self {
            Class::Base => "SmolVMError",
            Class::Validation => "ValidationError",
            Class::NotRunning => "VMNotRunningError",
            Class::AlreadyExists => "VMAlreadyExistsError",
            Class::NotFound => "VMNotFoundError",
            Class::Timeout => "OperationTimeoutError",
            Class::Cancelled => "CommandCancelledError",
            Class::Host => "HostError",
            Class::Image => "ImageError",
            Class::Start => "VMStartError",
            Class::Connection => "VMConnectionError",
            Class::Guest => "GuestError",
            Class::FileNotFound => "SmolVMFileNotFoundError",
            Class::SnapshotNotFound => "SnapshotNotFoundError",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One lazily imported class per [`Class`] variant.
static CLASSES: [PyOnceLock<Py<PyType>>; 14] = [const { PyOnceLock::new() }; 14];

/// A Python exception of class `class` with `message` and `details`.
pub fn raise(py: Python<'_>, class: Class, message: String, details: &[(&str, Detail)]) -> PyErr {
    match build(py, class, &message, details) {
        Ok(err) => err,
        // smolvm.exceptions could not be imported: still report the message.
        Err(import_err) => {
            let err = PyRuntimeError::new_err(message);
            err.set_cause(py, Some(import_err));
            err
        }
    }
}

fn build(
    py: Python<'_>,
    class: Class,
    message: &str,
    details: &[(&str, Detail)],
) -> PyResult<PyErr> {
    let cls = CLASSES[class.index()].import(py, "smolvm.exceptions", class.name())?;
    let dict = PyDict::new(py);
    for (key, value) in details {
        match value {
            Detail::Str(s) => dict.set_item(key, s)?,
            Detail::Float(f) => dict.set_item(key, f)?,
        }
    }
    let exc = cls.call1((message, dict))?;
    Ok(PyErr::from_value(exc))
}

/// A value in an exception's `details`.
pub enum Detail {
    /// Text.
    Str(String),
    /// A number of seconds.
    Float(f64),
}

fn s(value: impl Into<String>) -> Detail {
    Detail::Str(value.into())
}

impl Class {
    /// The class of each SDK error code; `None` for a code this table misses (a test checks
    /// that none is missed).
    fn of_code(code: ErrorCode) -> Option<Class> {
        use ErrorCode as C;
        Some(match code {
            C::InvalidInput | C::UnsafeTree | C::UnsafeUpload | C::DestinationNotEmpty => {
                Class::Validation
            }
            C::AlreadyExists => Class::AlreadyExists,
            C::VmNotRunning => Class::NotRunning,
            C::NotFound => Class::NotFound,
            C::Timeout => Class::Timeout,
            C::Cancelled => Class::Cancelled,
            C::MissingFile | C::MissingProgram | C::UnsafeDataDir => Class::Host,
            C::StartFailed => Class::Start,
            C::GuestError => Class::Guest,
            C::Disconnected | C::ProtocolError => Class::Connection,
            C::IoError | C::BuildFailed | C::NoSpace | C::TooLarge => Class::Base,
            _ => return None,
        })
    }

    /// The class of `err`: its code's, narrowed by what it is about where the package has a
    /// more specific class (a missing guest image, an unknown snapshot), or — as the package
    /// has always raised them — a broader one (an unknown image, a taken snapshot id).
    fn of(err: &Error) -> Class {
        match err {
            Error::NotFound {
                what: "snapshot", ..
            } => Class::SnapshotNotFound,
            Error::NotFound {
                what: "sandbox" | "sandbox configuration",
                ..
            } => Class::NotFound,
            Error::NotFound { .. } => Class::Base,
            Error::AlreadyExists {
                what: Resource::Sandbox,
                ..
            } => Class::AlreadyExists,
            Error::AlreadyExists { .. } => Class::Validation,
            Error::MissingFile {
                what: "guest kernel" | "guest image",
                ..
            } => Class::Image,
            // A path the caller configured.
            Error::MissingFile {
                what: "kernel_path" | "rootfs_path",
                ..
            } => Class::Validation,
            _ => Class::of_code(err.code()).unwrap_or(Class::Base),
        }
    }
}

/// The facts an SDK error's message is made of, as the exception's `details`.
fn details(err: &Error) -> Vec<(&'static str, Detail)> {
    match err {
        Error::InvalidConfig { field, .. } => vec![("field", s(*field))],
        Error::AlreadyExists { what, .. } => vec![("field", s(what.field()))],
        Error::InvalidEnv(e) => {
            let mut details = vec![("field", s("env_vars"))];
            if let Some(key) = e.key() {
                details.push(("key", s(key)));
            }
            details
        }
        Error::VmNotRunning {
            action,
            vm_id,
            state,
        } => vec![
            ("action", s(*action)),
            ("vm_id", s(vm_id)),
            ("state", s(state.as_str())),
        ],
        Error::Timeout {
            command,
            timeout,
            vm_id,
        } => vec![
            ("command", s(command)),
            ("timeout_seconds", Detail::Float(timeout.as_secs_f64())),
            ("vm_id", s(vm_id)),
        ],
        Error::Cancelled { command, vm_id } => {
            vec![("command", s(command)), ("vm_id", s(vm_id))]
        }
        Error::MissingFile { what, path, .. } => {
            let path = ("path", s(path.display().to_string()));
            match Class::of(err) {
                Class::Validation => vec![("field", s(*what)), path],
                _ => vec![("what", s(*what)), path],
            }
        }
        Error::NotFound {
            what: "snapshot",
            name,
            ..
        } => vec![("what", s("snapshot")), ("snapshot_id", s(name))],
        Error::NotFound { what, name, .. } => vec![("what", s(*what)), ("vm_id", s(name))],
        Error::MissingProgram { program, .. } => vec![("program", s(*program))],
        Error::UnsafeDataDir { path, .. } => vec![("path", s(path.display().to_string()))],
        Error::StartFailed { vm_id, .. }
        | Error::Disconnected { vm_id, .. }
        | Error::Protocol { vm_id, .. } => vec![("vm_id", s(vm_id))],
        Error::Guest { vm_id, kind, .. } => {
            let kind = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{kind:?}"));
            vec![("vm_id", s(vm_id)), ("kind", s(kind))]
        }
        Error::Transfer { rule, .. } => vec![("rule", s(rule_name(*rule)))],
        _ => Vec::new(),
    }
}

/// The `rule` detail of a refused transfer.
fn rule_name(rule: TransferRule) -> &'static str {
    match rule {
        TransferRule::UnsafeTree => "unsafe_tree",
        TransferRule::UnsafeUpload => "unsafe_upload",
        TransferRule::DestinationNotEmpty => "destination_not_empty",
        TransferRule::TooLarge => "too_large",
        TransferRule::NoSpace => "no_space",
        TransferRule::Stalled => "stalled",
    }
}

/// The exception for an SDK error: its class looked up by [`Error::code`] (see
/// [`Class::of`]), with the message and its facts.
pub fn to_py(py: Python<'_>, err: Error) -> PyErr {
    raise(py, Class::of(&err), err.to_string(), &details(&err))
}

/// The exception for an SDK error of a file transfer between the host path `local` (if any)
/// and the guest path `guest`: a missing file on either side is a `SmolVMFileNotFoundError`
/// (a `FileNotFoundError` too) naming the path and the side; the rest as [`to_py`].
pub fn file_to_py(py: Python<'_>, err: Error, local: Option<&Path>, guest: &str) -> PyErr {
    let host_path = |fallback: String| local.map_or(fallback, |p| p.display().to_string());
    match err {
        Error::NotFound {
            what: "local file",
            ref name,
            ..
        } => {
            let message = format!("no such file on the host: {name}");
            let details = [("path", s(name.clone())), ("location", s("host"))];
            raise(py, Class::FileNotFound, message, &details)
        }
        Error::Io {
            ref context,
            ref source,
        } if source.kind() == std::io::ErrorKind::NotFound => {
            let path = host_path(context.clone());
            let message = format!("no such file or directory on the host: {path} ({context})");
            let details = [("path", s(path)), ("location", s("host"))];
            raise(py, Class::FileNotFound, message, &details)
        }
        Error::Guest {
            ref vm_id,
            kind: ErrorKind::NotFound,
            ref message,
        } => {
            let text = format!("no such file or directory in VM {vm_id}: {guest} ({message})");
            let details = [
                ("path", s(guest)),
                ("location", s("guest")),
                ("vm_id", s(vm_id.clone())),
            ];
            raise(py, Class::FileNotFound, text, &details)
        }
        other => to_py(py, other),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn every_code_has_a_class() {
        for code in ErrorCode::ALL {
            assert!(Class::of_code(*code).is_some(), "{code} has no class");
        }
    }

    /// The class of errors whose code alone does not decide it, and of a few that it does.
    #[test]
    fn classes_are_as_the_package_has_always_raised_them() {
        let not_found = |what| Error::NotFound {
            what,
            name: "x".into(),
            hint: "h".into(),
        };
        let missing = |what| Error::MissingFile {
            what,
            path: "/x".into(),
            hint: "h".into(),
        };
        let taken = |what| Error::AlreadyExists {
            what,
            name: "x".into(),
            hint: "h".into(),
        };
        let cases = [
            (not_found("sandbox"), Class::NotFound),
            (not_found("sandbox configuration"), Class::NotFound),
            (not_found("snapshot"), Class::SnapshotNotFound),
            (not_found("image"), Class::Base),
            (missing("guest kernel"), Class::Image),
            (missing("guest image"), Class::Image),
            (missing("rootfs_path"), Class::Validation),
            (missing("smolvm-supervisor"), Class::Host),
            (taken(Resource::Sandbox), Class::AlreadyExists),
            (taken(Resource::Snapshot), Class::Validation),
            (
                Error::Guest {
                    vm_id: "v".into(),
                    kind: ErrorKind::Validation,
                    message: "m".into(),
                },
                Class::Validation,
            ),
            (
                Error::Transfer {
                    what: "w".into(),
                    rule: TransferRule::Stalled,
                    reason: "r".into(),
                    hint: "h".into(),
                },
                Class::Timeout,
            ),
            (
                Error::Timeout {
                    command: "c".into(),
                    timeout: Duration::from_secs(1),
                    vm_id: "v".into(),
                },
                Class::Timeout,
            ),
            (Error::Build("b".into()), Class::Base),
        ];
        for (err, class) in cases {
            assert_eq!(Class::of(&err), class, "{err:?}");
        }
        let field = |err: &Error| match details(err).first() {
            Some(("field", Detail::Str(f))) => f.clone(),
            _ => String::new(),
        };
        assert_eq!(field(&taken(Resource::Sandbox)), "vm_id");
        assert_eq!(field(&taken(Resource::Snapshot)), "snapshot_id");
        assert_eq!(field(&missing("rootfs_path")), "rootfs_path");
    }
}
