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
use smolvm::{Error, TransferRule};
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

/// The exception for an SDK error.
pub fn to_py(py: Python<'_>, err: Error) -> PyErr {
    let message = err.to_string();
    let (class, details): (Class, Vec<(&str, Detail)>) = match err {
        Error::InvalidConfig { field, reason } => {
            let class = if field == "vm_id" && reason.contains("already exists") {
                Class::AlreadyExists
            } else {
                Class::Validation
            };
            (class, vec![("field", s(field))])
        }
        Error::InvalidEnv(e) => {
            let mut details = vec![("field", s("env_vars"))];
            if let Some(key) = e.key() {
                details.push(("key", s(key)));
            }
            (Class::Validation, details)
        }
        Error::VmNotRunning {
            action,
            vm_id,
            state,
        } => (
            Class::NotRunning,
            vec![
                ("action", s(action)),
                ("vm_id", s(vm_id)),
                ("state", s(state)),
            ],
        ),
        Error::Timeout {
            command,
            timeout,
            vm_id,
        } => (
            Class::Timeout,
            vec![
                ("command", s(command)),
                ("timeout_seconds", Detail::Float(timeout.as_secs_f64())),
                ("vm_id", s(vm_id)),
            ],
        ),
        Error::Cancelled { command, vm_id } => (
            Class::Cancelled,
            vec![("command", s(command)), ("vm_id", s(vm_id))],
        ),
        Error::MissingFile { what, path, .. } => {
            let path = ("path", s(path.display().to_string()));
            match what {
                "kernel_path" | "rootfs_path" => {
                    (Class::Validation, vec![("field", s(what)), path])
                }
                "guest kernel" | "guest image" => (Class::Image, vec![("what", s(what)), path]),
                _ => (Class::Host, vec![("what", s(what)), path]),
            }
        }
        Error::NotFound {
            what: "snapshot",
            name,
            ..
        } => (
            Class::SnapshotNotFound,
            vec![("what", s("snapshot")), ("snapshot_id", s(name))],
        ),
        Error::NotFound { what, name, .. } => {
            let class = if what.starts_with("sandbox") {
                Class::NotFound
            } else {
                Class::Base
            };
            (class, vec![("what", s(what)), ("vm_id", s(name))])
        }
        Error::MissingProgram { program, .. } => (Class::Host, vec![("program", s(program))]),
        Error::UnsafeDataDir { path, .. } => {
            (Class::Host, vec![("path", s(path.display().to_string()))])
        }
        Error::StartFailed { vm_id, .. } => (Class::Start, vec![("vm_id", s(vm_id))]),
        Error::Guest { vm_id, kind, .. } => {
            let class = if kind == ErrorKind::Validation {
                Class::Validation
            } else {
                Class::Guest
            };
            let kind = serde_json::to_value(kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{kind:?}"));
            (class, vec![("vm_id", s(vm_id)), ("kind", s(kind))])
        }
        Error::Disconnected { vm_id, .. } | Error::Protocol { vm_id, .. } => {
            (Class::Connection, vec![("vm_id", s(vm_id))])
        }
        Error::Io { .. } | Error::Build(_) => (Class::Base, Vec::new()),
        Error::Transfer { rule, .. } => {
            let (class, name) = match rule {
                TransferRule::UnsafeTree => (Class::Validation, "unsafe_tree"),
                TransferRule::UnsafeUpload => (Class::Validation, "unsafe_upload"),
                TransferRule::DestinationNotEmpty => (Class::Validation, "destination_not_empty"),
                TransferRule::TooLarge => (Class::Base, "too_large"),
                TransferRule::NoSpace => (Class::Base, "no_space"),
                TransferRule::Stalled => (Class::Timeout, "stalled"),
            };
            (class, vec![("rule", s(name))])
        }
        // Variants the SDK may add later are still SmolVMErrors.
        #[allow(unreachable_patterns)]
        _ => (Class::Base, Vec::new()),
    };
    raise(py, class, message, &details)
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
