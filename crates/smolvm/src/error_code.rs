//! [`ErrorCode`], the stable classes of [`crate::Error`], and [`Resource`], what a taken name
//! belongs to.

/// Defines [`ErrorCode`] with its names, and [`ErrorCode::ALL`] listing every variant.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// The stable, machine-readable class of an [`crate::Error`] (see
        /// [`crate::Error::code`]). Its [`ErrorCode::as_str`] names are those the CLI's
        /// `--json` output reports as `error.code`; the CLI's exit codes and the Python
        /// exception classes are looked up by it. New codes may be added.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The snake_case name (`invalid_input`, `not_found`...); stable.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)*
                }
            }
        }
    };
}

error_codes! {
    /// A configuration value, argument or environment variable was refused.
    InvalidInput => "invalid_input",
    /// The name asked for is taken by an existing sandbox or snapshot.
    AlreadyExists => "already_exists",
    /// The operation needs a running sandbox.
    VmNotRunning => "vm_not_running",
    /// No sandbox, image, snapshot or file by that name.
    NotFound => "not_found",
    /// A command ran past its timeout, or a transfer stalled.
    Timeout => "timeout",
    /// A command was cancelled.
    Cancelled => "cancelled",
    /// A file the VM needs (kernel, image...) is missing.
    MissingFile => "missing_file",
    /// A host program is not installed.
    MissingProgram => "missing_program",
    /// The VM failed to boot or its supervisor failed.
    StartFailed => "start_failed",
    /// The guest agent failed a request.
    GuestError => "guest_error",
    /// The connection to the VM broke.
    Disconnected => "disconnected",
    /// Malformed or unexpected frames from the VM's supervisor.
    ProtocolError => "protocol_error",
    /// A host-side I/O operation failed.
    IoError => "io_error",
    /// Building the kernel or an image failed.
    BuildFailed => "build_failed",
    /// Not enough disk space.
    NoSpace => "no_space",
    /// The data directory is open to other users.
    UnsafeDataDir => "unsafe_data_dir",
    /// A downloaded tree would escape or change something outside its destination.
    UnsafeTree => "unsafe_tree",
    /// An uploaded symlink points outside the uploaded tree.
    UnsafeUpload => "unsafe_upload",
    /// The destination of a download is not empty.
    DestinationNotEmpty => "destination_not_empty",
    /// A transfer is over a size or entry cap.
    TooLarge => "too_large",
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a name belongs to, in [`crate::Error::AlreadyExists`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Resource {
    /// A sandbox (its name is the configuration's `vm_id`).
    Sandbox,
    /// A snapshot (its id is `snapshot_id`).
    Snapshot,
}

impl Resource {
    /// The noun: `sandbox` or `snapshot`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Sandbox => "sandbox",
            Resource::Snapshot => "snapshot",
        }
    }

    /// The argument that names one: `vm_id` or `snapshot_id` (the SDK's and the Python
    /// package's name for it; the CLI's `--name`/`--snapshot-id`).
    pub fn field(self) -> &'static str {
        match self {
            Resource::Sandbox => "vm_id",
            Resource::Snapshot => "snapshot_id",
        }
    }
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_distinct_snake_case_names() {
        let mut names: Vec<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for name in &names {
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::NotFound.to_string(), "not_found");
    }
}
