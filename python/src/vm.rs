//! `smolvm._native.Vm`: the SDK's VM handle, with every blocking call outside the GIL.
//!
//! The Python class `smolvm.SmolVM` wraps this one; argument checking that needs Python types
//! (and the reference API's error messages) lives there.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::{PyKeyboardInterrupt, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use smolvm::files::DownloadOptions;
use smolvm::Launcher;
use smolvm::process::SpawnOptions;
use smolvm::run::DEFAULT_MAX_OUTPUT;
use smolvm::{
    CancelToken, DataDir, Error, RestoreOptions, RunOptions, Shell, SmolVm, SnapshotMeta,
    SnapshotOptions, VmConfig, VmState,
};

use crate::errors;
use crate::process::NativeProcess;
use crate::wait::{interruptible, Waited};

/// A VM owned by this handle; it is stopped and deleted when the handle is garbage-collected.
/// Methods may be called from several Python threads at once.
#[pyclass(frozen, module = "smolvm._native", name = "Vm")]
pub struct NativeVm {
    /// Always `Some` until the handle is dropped.
    vm: Option<SmolVm>,
}

impl NativeVm {
    fn vm(&self) -> &SmolVm {
        self.vm
            .as_ref()
            .expect("the VM is present until the handle is dropped")
    }
}

#[pymethods]
impl NativeVm {
    /// Validates the configuration and prepares the VM (nothing is started). `launcher` is the
    /// command line that runs a supervisor (`--dir <vm dir>` is appended). `cold` boots from
    /// scratch instead of from the image's pre-booted template.
    #[new]
    #[pyo3(signature = (*, vm_id, vcpu_count, mem_size_mib, kernel_path, rootfs_path, boot_args, env_vars, image, launcher, cold = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        vm_id: Option<String>,
        vcpu_count: u32,
        mem_size_mib: u32,
        kernel_path: Option<PathBuf>,
        rootfs_path: Option<PathBuf>,
        boot_args: Option<String>,
        env_vars: BTreeMap<String, String>,
        image: Option<String>,
        launcher: Vec<OsString>,
        cold: bool,
    ) -> PyResult<Self> {
        let launcher = launcher_of(launcher)?;
        let config = VmConfig {
            vm_id,
            vcpu_count,
            mem_size_mib,
            kernel_path,
            rootfs_path,
            boot_args,
            env_vars,
            image,
        };
        let mut vm = py
            .detach(|| SmolVm::new(config))
            .map_err(|e| errors::to_py(py, e))?;
        // The SDK looks for a launcher only when the VM starts; ours runs the supervisor
        // through this interpreter, so no `smolvm-supervisor` binary is needed.
        vm.set_launcher(launcher);
        vm.set_cold(cold);
        Ok(Self { vm: Some(vm) })
    }

    /// Makes a new VM from snapshot `snapshot_id` and starts it; the handle owns it (as one
    /// made with `Vm(...)`). `name` is its id, a random `vm-xxxxxxxx` when `None`. A Ctrl-C
    /// while it starts deletes the new VM and raises `KeyboardInterrupt`.
    #[staticmethod]
    #[pyo3(signature = (snapshot_id, name, launcher))]
    fn restore(
        py: Python<'_>,
        snapshot_id: &str,
        name: Option<String>,
        launcher: Vec<OsString>,
    ) -> PyResult<Self> {
        let launcher = launcher_of(launcher)?;
        let options = RestoreOptions {
            name,
            persistent: false,
        };
        let work =
            || SmolVm::restore_with(DataDir::from_env(), snapshot_id, &options, Some(launcher));
        match interruptible(py, work, || {}) {
            Waited::Done(result) => result
                .map(|vm| Self { vm: Some(vm) })
                .map_err(|e| errors::to_py(py, e)),
            Waited::Interrupted(err, result) => {
                // Dropping the owned handle stops and deletes the new VM.
                py.detach(move || drop(result));
                Err(err)
            }
        }
    }

    /// Connects to an existing sandbox by name or id (started by any process). The handle
    /// does not own it: dropping the handle leaves the sandbox as it is.
    #[staticmethod]
    fn attach(py: Python<'_>, name: &str, launcher: Vec<OsString>) -> PyResult<Self> {
        let launcher = launcher_of(launcher)?;
        let mut vm = py
            .detach(|| SmolVm::attach(name))
            .map_err(|e| errors::to_py(py, e))?;
        // Starting a stopped sandbox through this handle spawns a supervisor too.
        vm.set_launcher(launcher);
        Ok(Self { vm: Some(vm) })
    }

    /// The validated configuration: `(vm_id, vcpu_count, mem_size_mib, kernel_path,
    /// rootfs_path, boot_args, env_vars, image)`, paths resolved.
    #[getter]
    #[allow(clippy::type_complexity)]
    fn config(
        &self,
    ) -> (
        String,
        u32,
        u32,
        PathBuf,
        PathBuf,
        String,
        BTreeMap<String, String>,
        String,
    ) {
        let c = self.vm().config();
        (
            c.vm_id.clone(),
            c.vcpu_count,
            c.mem_size_mib,
            c.kernel_path.clone(),
            c.rootfs.path().to_path_buf(),
            c.boot_args.clone(),
            c.env_vars.clone(),
            c.image.clone(),
        )
    }

    /// Whether the sandbox outlives its handles (made persistent, e.g. by the CLI).
    #[getter]
    fn persistent(&self) -> bool {
        self.vm().is_persistent()
    }

    /// The VM's id.
    #[getter]
    fn vm_id(&self) -> &str {
        self.vm().vm_id()
    }

    /// `created`, `running`, `paused`, `stopped` or `deleted`.
    #[getter]
    fn status(&self) -> &'static str {
        self.vm().status().as_str()
    }

    /// The VM's directory on the host (it exists while the VM runs).
    #[getter]
    fn vm_dir(&self) -> PathBuf {
        self.vm().paths().dir().to_path_buf()
    }

    /// The host pids of the VM's supervisor and QEMU.
    fn host_pids(&self, py: Python<'_>) -> PyResult<(u32, u32)> {
        let vm = self.vm();
        py.detach(|| vm.host_pids())
            .map_err(|e| errors::to_py(py, e))
    }

    /// Boots the VM and waits until it answers. A Ctrl-C while it boots deletes the VM and
    /// raises `KeyboardInterrupt`.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let vm = self.vm();
        match interruptible(py, || vm.start(), || {}) {
            Waited::Done(result) => result.map_err(|e| errors::to_py(py, e)),
            Waited::Interrupted(err, _) => {
                let _ = py.detach(|| vm.delete());
                Err(err)
            }
        }
    }

    /// Runs `command`; returns `(exit_code, stdout, stderr, stdout_truncated,
    /// stderr_truncated)` with output decoded as UTF-8 (invalid bytes replaced). `timeout` is
    /// in seconds, `None` for no limit; `max_output` is the bytes kept per stream, `None` for
    /// all. A Ctrl-C kills the command in the guest and raises `KeyboardInterrupt`.
    #[pyo3(signature = (command, timeout, shell, env = None, cwd = None, max_output = Some(DEFAULT_MAX_OUTPUT)))]
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        command: &str,
        timeout: Option<f64>,
        shell: &str,
        env: Option<BTreeMap<String, String>>,
        cwd: Option<String>,
        max_output: Option<usize>,
    ) -> PyResult<RunOutput<'py>> {
        let shell = parse_shell(shell)?;
        let timeout = parse_timeout(timeout)?;
        let token = CancelToken::new();
        let options = RunOptions {
            shell,
            timeout,
            env: env.unwrap_or_default(),
            cwd,
            cancel: Some(token.clone()),
            max_output,
        };
        let vm = self.vm();
        let result = match interruptible(py, || vm.run_with(command, &options), || token.cancel()) {
            Waited::Done(result) => result,
            Waited::Interrupted(err, _) => return Err(err),
        };
        match result {
            Ok(r) => Ok((
                r.exit_code,
                decode(py, r.stdout),
                decode(py, r.stderr),
                r.stdout_truncated,
                r.stderr_truncated,
            )),
            // Cancelled without a signal of ours: someone else's token cannot exist, but keep
            // the Python convention all the same.
            Err(Error::Cancelled { command, .. }) => Err(PyKeyboardInterrupt::new_err(format!(
                "command {command:?} was cancelled"
            ))),
            Err(e) => Err(errors::to_py(py, e)),
        }
    }

    /// Starts `command` and returns at once with a handle on its output, stdin and signals.
    /// `stdin=false` gives the command `/dev/null` as stdin.
    #[pyo3(signature = (command, timeout, shell, stdin, env = None, cwd = None))]
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        &self,
        py: Python<'_>,
        command: &str,
        timeout: Option<f64>,
        shell: &str,
        stdin: bool,
        env: Option<BTreeMap<String, String>>,
        cwd: Option<String>,
    ) -> PyResult<NativeProcess> {
        let options = SpawnOptions {
            shell: parse_shell(shell)?,
            env: env.unwrap_or_default(),
            cwd,
            timeout: parse_timeout(timeout)?,
            stdin,
            tty: None,
        };
        let vm = self.vm();
        let process = py
            .detach(|| vm.spawn(command, &options))
            .map_err(|e| errors::to_py(py, e))?;
        Ok(NativeProcess::new(process, command, stdin))
    }

    /// Copies the local file `local` to `guest_path`; returns the guest path written.
    fn upload_file(&self, py: Python<'_>, local: PathBuf, guest_path: &str) -> PyResult<String> {
        let vm = self.vm();
        py.detach(|| vm.upload_file(&local, guest_path))
            .map_err(|e| errors::file_to_py(py, e, Some(&local), guest_path))
    }

    /// Copies the guest file `guest_path` to `local`; returns the local path written.
    /// Setuid/setgid/sticky bits are dropped unless `keep_special_bits`; `max_bytes`,
    /// `idle_timeout` and `timeout` (seconds) cap the transfer.
    #[pyo3(signature = (guest_path, local, keep_special_bits = false, max_bytes = None, idle_timeout = None, timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn download_file(
        &self,
        py: Python<'_>,
        guest_path: &str,
        local: PathBuf,
        keep_special_bits: bool,
        max_bytes: Option<u64>,
        idle_timeout: Option<f64>,
        timeout: Option<f64>,
    ) -> PyResult<OsString> {
        let options = download_options(
            false,
            keep_special_bits,
            max_bytes,
            None,
            idle_timeout,
            timeout,
        )?;
        let vm = self.vm();
        py.detach(|| vm.download_file_with(guest_path, &local, &options))
            .map(PathBuf::into_os_string)
            .map_err(|e| errors::file_to_py(py, e, Some(&local), guest_path))
    }

    /// Writes `data` to the guest file `guest_path` with permission bits `mode`.
    fn write_file(&self, py: Python<'_>, guest_path: &str, data: &[u8], mode: u32) -> PyResult<()> {
        let vm = self.vm();
        py.detach(|| vm.write_file(guest_path, data, mode))
            .map_err(|e| errors::file_to_py(py, e, None, guest_path))
    }

    /// The content of the guest file `guest_path`.
    fn read_file<'py>(&self, py: Python<'py>, guest_path: &str) -> PyResult<Bound<'py, PyBytes>> {
        let vm = self.vm();
        let data = py
            .detach(|| vm.read_file(guest_path))
            .map_err(|e| errors::file_to_py(py, e, None, guest_path))?;
        Ok(PyBytes::new(py, &data))
    }

    /// Copies the local directory tree `local` into the guest directory `guest_dir`.
    fn upload_dir(&self, py: Python<'_>, local: PathBuf, guest_dir: &str) -> PyResult<()> {
        let vm = self.vm();
        py.detach(|| vm.upload_dir(&local, guest_dir))
            .map_err(|e| errors::file_to_py(py, e, Some(&local), guest_dir))
    }

    /// Copies the guest directory tree `guest_dir` to the local directory `local` with the
    /// SDK's rules (see `SmolVm::download_dir_with`); returns the local path written.
    #[pyo3(signature = (guest_dir, local, overwrite = false, keep_special_bits = false, max_bytes = None, max_entries = None, idle_timeout = None, timeout = None))]
    #[allow(clippy::too_many_arguments)]
    fn download_dir(
        &self,
        py: Python<'_>,
        guest_dir: &str,
        local: PathBuf,
        overwrite: bool,
        keep_special_bits: bool,
        max_bytes: Option<u64>,
        max_entries: Option<usize>,
        idle_timeout: Option<f64>,
        timeout: Option<f64>,
    ) -> PyResult<OsString> {
        let options = download_options(
            overwrite,
            keep_special_bits,
            max_bytes,
            max_entries,
            idle_timeout,
            timeout,
        )?;
        let vm = self.vm();
        py.detach(|| vm.download_dir_with(guest_dir, &local, &options))
            .map(PathBuf::into_os_string)
            .map_err(|e| errors::file_to_py(py, e, Some(&local), guest_dir))
    }

    /// Sets managed environment variables; returns the sorted names of all of them.
    fn set_env_vars(
        &self,
        py: Python<'_>,
        vars: BTreeMap<String, String>,
        merge: bool,
    ) -> PyResult<Vec<String>> {
        let vm = self.vm();
        py.detach(|| vm.set_env_vars(&vars, merge))
            .map_err(|e| errors::to_py(py, e))
    }

    /// The managed environment variables.
    fn list_env_vars(&self, py: Python<'_>) -> PyResult<BTreeMap<String, String>> {
        let vm = self.vm();
        py.detach(|| vm.list_env_vars())
            .map_err(|e| errors::to_py(py, e))
    }

    /// Removes `keys`; returns the removed variables that existed, with their values.
    fn unset_env_vars(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
    ) -> PyResult<BTreeMap<String, String>> {
        let vm = self.vm();
        py.detach(|| vm.unset_env_vars(&keys))
            .map_err(|e| errors::to_py(py, e))
    }

    /// Stops the guest's vCPUs (memory and processes are kept). Does nothing if paused.
    fn pause(&self, py: Python<'_>) -> PyResult<()> {
        let vm = self.vm();
        py.detach(|| vm.pause()).map_err(|e| errors::to_py(py, e))
    }

    /// Restarts a paused guest. Does nothing if running.
    fn resume(&self, py: Python<'_>) -> PyResult<()> {
        let vm = self.vm();
        py.detach(|| vm.resume()).map_err(|e| errors::to_py(py, e))
    }

    /// Saves the VM as snapshot `id` (a new `snap-xxxxxxxx` when `None`); returns it as
    /// [`snapshot_tuple`] describes. The guest resumes afterwards unless `keep_paused`.
    #[pyo3(signature = (id, keep_paused))]
    fn snapshot(
        &self,
        py: Python<'_>,
        id: Option<String>,
        keep_paused: bool,
    ) -> PyResult<SnapshotTuple> {
        let vm = self.vm();
        let options = SnapshotOptions { id, keep_paused };
        py.detach(|| vm.snapshot(&options))
            .map(|meta| snapshot_tuple(&meta))
            .map_err(|e| errors::to_py(py, e))
    }

    /// Stops the VM (clean guest shutdown, forced after 5 s). Does nothing if not running.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let vm = self.vm();
        py.detach(|| vm.stop()).map_err(|e| errors::to_py(py, e))
    }

    /// Stops the VM if needed and removes everything it left on the host.
    fn delete(&self, py: Python<'_>) -> PyResult<()> {
        let vm = self.vm();
        py.detach(|| vm.delete()).map_err(|e| errors::to_py(py, e))
    }
}

impl Drop for NativeVm {
    fn drop(&mut self) {
        let Some(vm) = self.vm.take() else { return };
        if matches!(vm.status(), VmState::Created | VmState::Deleted) {
            return;
        }
        // Stopping takes a moment: let other Python threads run meanwhile. (Dropping the SDK
        // handle stops and deletes the VM.) When Python cannot be attached to (interpreter
        // shutdown), the closure is dropped unrun and the VM with it.
        let _ = Python::try_attach(move |py| py.detach(move || drop(vm)));
    }
}

/// A snapshot as Python sees it: `(id, source_vm, image, created_at, memory_bytes,
/// disk_bytes, save_ms)`, `created_at` in seconds since the Unix epoch and the sizes and time
/// 0 when the snapshot did not record them.
pub type SnapshotTuple = (String, String, String, u64, u64, u64, u64);

/// The [`SnapshotTuple`] of `meta`.
pub fn snapshot_tuple(meta: &SnapshotMeta) -> SnapshotTuple {
    let (memory, disk, save_ms) = meta
        .stats
        .as_ref()
        .map_or((0, 0, 0), |s| (s.memory_bytes, s.disk_bytes, s.save_ms));
    (
        meta.id.clone(),
        meta.source_vm.clone(),
        meta.image.clone(),
        meta.created_at,
        memory,
        disk,
        save_ms,
    )
}

/// Every snapshot in the data directory, oldest first.
#[pyfunction]
pub fn list_snapshots(py: Python<'_>) -> Vec<SnapshotTuple> {
    let metas = py.detach(|| smolvm::snapshot::list(&DataDir::from_env()));
    metas.iter().map(snapshot_tuple).collect()
}

/// Removes snapshot `snapshot_id` and returns what it was; raises `SnapshotNotFoundError`
/// when there is none. VMs restored from it are unaffected.
#[pyfunction]
pub fn delete_snapshot(py: Python<'_>, snapshot_id: &str) -> PyResult<SnapshotTuple> {
    py.detach(|| smolvm::snapshot::remove(&DataDir::from_env(), snapshot_id))
        .map(|meta| snapshot_tuple(&meta))
        .map_err(|e| errors::to_py(py, e))
}

/// The SDK launcher for a command line (program, then arguments before `--dir <vm dir>`).
fn launcher_of(words: Vec<OsString>) -> PyResult<Launcher> {
    let mut words = words.into_iter();
    let program = words.next().ok_or_else(|| {
        PyValueError::new_err("launcher must name a program to run the supervisor with")
    })?;
    Ok(Launcher::new(program, words.collect()))
}

/// What `run` hands to Python: exit code, stdout, stderr and the two truncation flags.
type RunOutput<'py> = (i32, Bound<'py, PyString>, Bound<'py, PyString>, bool, bool);

/// Turns captured output into a Python `str` with one copy: valid UTF-8 (the common case) is
/// handed to Python as it is, with no intermediate `String`; only invalid input goes through
/// a lossy copy. `bytes` is consumed, so its buffer is freed as soon as the `str` exists.
fn decode(py: Python<'_>, bytes: Vec<u8>) -> Bound<'_, PyString> {
    match std::str::from_utf8(&bytes) {
        Ok(text) => PyString::new(py, text),
        Err(_) => PyString::new(py, &String::from_utf8_lossy(&bytes)),
    }
}

/// `"login"` or `"raw"`.
fn parse_shell(shell: &str) -> PyResult<Shell> {
    match shell {
        "login" => Ok(Shell::Login),
        "raw" => Ok(Shell::Raw),
        other => Err(PyValueError::new_err(format!(
            "shell must be \"login\" or \"raw\", not {other:?}"
        ))),
    }
}

/// The SDK's download options from the Python keywords (`None`: the SDK's default).
fn download_options(
    overwrite: bool,
    keep_special_bits: bool,
    max_bytes: Option<u64>,
    max_entries: Option<usize>,
    idle_timeout: Option<f64>,
    timeout: Option<f64>,
) -> PyResult<DownloadOptions> {
    let defaults = DownloadOptions::default();
    Ok(DownloadOptions {
        overwrite,
        keep_special_bits,
        max_bytes,
        max_entries: max_entries.unwrap_or(defaults.max_entries),
        idle_timeout: parse_timeout(idle_timeout)?.unwrap_or(defaults.idle_timeout),
        timeout: parse_timeout(timeout)?,
    })
}

/// A timeout in seconds, `None` for no limit.
fn parse_timeout(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    timeout
        .map(|secs| {
            Duration::try_from_secs_f64(secs).map_err(|_| {
                PyValueError::new_err(format!(
                    "timeout must be a positive number of seconds or None, not {secs}"
                ))
            })
        })
        .transpose()
}
