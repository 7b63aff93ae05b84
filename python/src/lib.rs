//! `smolvm._native`: PyO3 bindings over the SmolVM Rust SDK.
//!
//! The public Python API lives in the pure-Python `smolvm` package (`smolvm.SmolVM`,
//! `smolvm.VMConfig`, ...); this module holds the parts that need Rust: the VM handle
//! ([`vm::NativeVm`]), validation shared with the SDK, the default image paths, and the entry
//! point of the per-VM supervisor process.

mod errors;
mod process;
mod vm;
mod wait;

use std::path::{Path, PathBuf};

use pyo3::prelude::*;
use smolvm::{DataDir, Error};

use errors::{Class, Detail};

/// Runs the supervisor of the VM in `dir` and exits the process with its status; never
/// returns. Started by the SDK as `python -c ... --dir <vm dir>`, not by users.
#[pyfunction]
fn supervisor_main(py: Python<'_>, dir: PathBuf) -> PyResult<()> {
    smolvm::supervisor::init_logging();
    let code = py.detach(|| smolvm::supervisor::run(Path::new(&dir)));
    std::process::exit(code)
}

/// The data directory (`$SMOLVM_DATA_DIR`, else `$XDG_STATE_HOME/smolvm`, else
/// `~/.local/state/smolvm`).
#[pyfunction]
fn data_dir() -> PathBuf {
    DataDir::from_env().root().to_path_buf()
}

/// The guest kernel `smolvm setup` built; raises `ImageError` when it is missing.
#[pyfunction]
fn default_kernel_path(py: Python<'_>) -> PyResult<PathBuf> {
    let path = DataDir::from_env().kernel();
    if path.is_file() {
        Ok(path)
    } else {
        Err(errors::to_py(
            py,
            Error::MissingFile {
                what: "guest kernel",
                path,
                hint: "run `smolvm setup` to build it".into(),
            },
        ))
    }
}

/// The root filesystem (an initramfs or an ext4 disk image) of image `image`, the default
/// image when `None`; raises `ImageError` when it is missing.
#[pyfunction]
#[pyo3(signature = (image = None))]
fn default_rootfs_path(py: Python<'_>, image: Option<&str>) -> PyResult<PathBuf> {
    let image = image.unwrap_or(smolvm::config::DEFAULT_IMAGE);
    smolvm::image::rootfs_of(&DataDir::from_env(), image).map_err(|e| errors::to_py(py, e))
}

/// Raises `ValidationError` unless `key` matches `^[A-Za-z_][A-Za-z0-9_]*$`.
#[pyfunction]
fn validate_env_key(py: Python<'_>, key: &str) -> PyResult<()> {
    smolvm_protocol::validate_env_key(key).map_err(|e| errors::to_py(py, e.into()))
}

/// Raises `ValidationError` if `value` (of variable `key`) cannot be stored (a NUL byte).
#[pyfunction]
fn validate_env_value(py: Python<'_>, key: &str, value: &str) -> PyResult<()> {
    smolvm_protocol::validate_env_value(key, value).map_err(|e| errors::to_py(py, e.into()))
}

/// Raises `ValidationError` unless `vm_id` is 1-63 characters of `[a-z0-9-]`, starting with a
/// letter or digit.
#[pyfunction]
fn validate_vm_id(py: Python<'_>, vm_id: &str) -> PyResult<()> {
    smolvm::config::validate_vm_id(vm_id).map_err(|e| errors::to_py(py, e))
}

/// Raises `ValidationError` naming `field`, with `reason` (used by `VMConfig`).
#[pyfunction]
fn invalid(py: Python<'_>, field: String, reason: String) -> PyErr {
    let message = format!("invalid {field}: {reason}");
    errors::raise(
        py,
        Class::Validation,
        message,
        &[("field", Detail::Str(field))],
    )
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<vm::NativeVm>()?;
    m.add_class::<process::NativeProcess>()?;
    m.add_function(wrap_pyfunction!(vm::list_snapshots, m)?)?;
    m.add_function(wrap_pyfunction!(vm::delete_snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(supervisor_main, m)?)?;
    m.add_function(wrap_pyfunction!(data_dir, m)?)?;
    m.add_function(wrap_pyfunction!(default_kernel_path, m)?)?;
    m.add_function(wrap_pyfunction!(default_rootfs_path, m)?)?;
    m.add_function(wrap_pyfunction!(validate_env_key, m)?)?;
    m.add_function(wrap_pyfunction!(validate_env_value, m)?)?;
    m.add_function(wrap_pyfunction!(validate_vm_id, m)?)?;
    m.add_function(wrap_pyfunction!(invalid, m)?)?;
    m.add("DEFAULT_BOOT_ARGS", smolvm::DEFAULT_BOOT_ARGS)?;
    m.add("DEFAULT_IMAGE", smolvm::config::DEFAULT_IMAGE)?;
    m.add("DEFAULT_MAX_OUTPUT", smolvm::run::DEFAULT_MAX_OUTPUT)?;
    m.add("MAX_ENV_ENTRY_BYTES", smolvm_protocol::MAX_ENV_ENTRY_BYTES)?;
    m.add("MAX_ENV_TOTAL_BYTES", smolvm_protocol::MAX_ENV_TOTAL_BYTES)?;
    m.add("MAX_VCPUS", smolvm::config::MAX_VCPUS)?;
    m.add("MIN_MEMORY_MIB", smolvm::config::MIN_MEMORY_MIB)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
