//! The managed environment file ([`crate::Options::env_file`]), changed atomically and
//! durably under a lock.
//!
//! Every operation reads the file, computes the new set and (for changes) writes a temp file in
//! the same directory, fsyncs it, renames it over the old one and fsyncs the directory: a
//! reader, or a crash, sees the old file or the new one, never a mix.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use smolvm_protocol::{
    parse_env_file, render_env_file, validate_env_key, validate_env_set, validate_env_value,
    ErrorKind, Response,
};

use crate::shared::Shared;

/// Sets `vars` (merged into the current set, or replacing it) and answers with all names.
pub fn set(shared: &Shared, vars: BTreeMap<String, String>, merge: bool) -> Response {
    // Validate the whole batch before touching anything: all or nothing.
    for (key, value) in &vars {
        if let Err(e) = validate_env_key(key).and_then(|()| validate_env_value(key, value)) {
            return Response::error(ErrorKind::Validation, e.to_string());
        }
    }
    let _guard = shared.env_lock.lock().unwrap_or_else(|e| e.into_inner());
    let mut current = if merge {
        match load(shared.options.env_file()) {
            Ok(current) => current,
            Err(e) => return io_error(shared.options.env_file(), e),
        }
    } else {
        BTreeMap::new()
    };
    current.extend(vars);
    // Only here is the merged set known: a set too large to export would break every later
    // login-shell command, so it is refused and the file stays as it was.
    if let Err(e) = validate_env_set(&current) {
        return Response::error(ErrorKind::Validation, e.to_string());
    }
    match store(shared.options.env_file(), &current) {
        Ok(()) => Response::EnvKeys {
            keys: current.into_keys().collect(),
        },
        Err(e) => io_error(shared.options.env_file(), e),
    }
}

/// Answers with the managed variables.
pub fn list(shared: &Shared) -> Response {
    let _guard = shared.env_lock.lock().unwrap_or_else(|e| e.into_inner());
    match load(shared.options.env_file()) {
        Ok(vars) => Response::EnvVars { vars },
        Err(e) => io_error(shared.options.env_file(), e),
    }
}

/// Removes `keys` and answers with the removed variables and their old values.
pub fn unset(shared: &Shared, keys: Vec<String>) -> Response {
    let _guard = shared.env_lock.lock().unwrap_or_else(|e| e.into_inner());
    let result = (|| {
        let mut current = load(shared.options.env_file())?;
        let removed: BTreeMap<String, String> = keys
            .iter()
            .filter_map(|k| current.remove_entry(k))
            .collect();
        if !removed.is_empty() {
            store(shared.options.env_file(), &current)?;
        }
        Ok(removed)
    })();
    match result {
        Ok(vars) => Response::EnvVars { vars },
        Err(e) => io_error(shared.options.env_file(), e),
    }
}

fn io_error(path: &Path, e: io::Error) -> Response {
    Response::error(ErrorKind::Io, format!("{}: {e}", path.display()))
}

fn load(path: &Path) -> io::Result<BTreeMap<String, String>> {
    match fs::read_to_string(path) {
        Ok(text) => {
            parse_env_file(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

fn store(path: &Path, vars: &BTreeMap<String, String>) -> io::Result<()> {
    let dir = path.parent().expect("env file has a parent directory");
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".smolvm_env.sh.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        file.write_all(render_env_file(vars).as_bytes())?;
        // The mode given to open() is filtered by the umask; the file must be exactly 0644.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}
