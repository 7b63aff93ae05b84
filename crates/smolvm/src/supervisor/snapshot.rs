//! Pause, resume and snapshots, driven through QEMU's monitor.
//!
//! A snapshot is QEMU's migration stream (memory and device state) of the stopped guest,
//! compressed with zstd as it arrives, plus a copy of the disk overlay taken once migration
//! has completed (QEMU has then flushed and released the disk, so the copy matches memory).
//! Everything is written into a hidden directory next to the destination, which is renamed
//! into place last: a snapshot is complete or absent, whatever fails or is killed on the way.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use smolvm_protocol::{AgentRequest, ErrorKind, Response, SnapshotStats};

use super::error::{Result, SupervisorError};
use super::Supervisor;
use crate::image::RootFs;
use crate::paths::SnapshotPaths;
use smolvm_sys::fs::{link_or_copy, sync_dir};
use smolvm_vmm::{Machine, SaveStatus};

/// zstd level for memory files: level 1 compresses a booted guest's stream at several hundred
/// MB/s, so saving is bounded by QEMU rather than by compression (see the README's numbers).
const ZSTD_LEVEL: i32 = 1;

/// How long the VMM gets to finish writing a machine's state once its stream has ended.
const SAVE_TIMEOUT: Duration = Duration::from_secs(30);

impl Supervisor {
    /// Runs `f` on the machine's controls (one monitor session: calls never interleave).
    pub(crate) fn with_machine<T>(
        &self,
        f: impl FnOnce(&mut dyn Machine) -> smolvm_vmm::Result<T>,
    ) -> Result<T> {
        let mut machine = self.machine.lock().unwrap_or_else(|e| e.into_inner());
        Ok(f(machine.as_mut())?)
    }

    /// Records (on disk too, for listings) whether the user paused the guest.
    fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::SeqCst);
        let marker = self.paths.paused_marker();
        if paused {
            let _ = smolvm_sys::fs::create_with_mode(&marker, smolvm_sys::fs::PRIVATE_FILE);
        } else {
            let _ = std::fs::remove_file(marker);
        }
    }

    /// Restarts the vCPUs and steps the guest clock, which stood still while they were
    /// stopped, to the host's time.
    pub(crate) fn continue_guest(&self) -> Result<()> {
        self.with_machine(|m| m.resume())?;
        self.sync_clock();
        Ok(())
    }

    /// Sends the host's time to the agent; waits briefly for it to be applied.
    fn sync_clock(&self) {
        let hello = AgentRequest::Hello {
            protocol: smolvm_protocol::PROTOCOL_VERSION,
            host_time_ns: Some(host_time_ns()),
            identity: None,
        };
        if let Ok(replies) = self.router.request_internal(&hello) {
            let _ = replies.recv_timeout(Duration::from_secs(5));
        }
    }
}

/// Host wall-clock time in nanoseconds since the Unix epoch.
pub(crate) fn host_time_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn refuse(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::error(kind, message)
}

/// Stops the guest's vCPUs; its memory stays. Pausing a paused guest does nothing.
pub(crate) fn pause(supervisor: &Arc<Supervisor>) -> Response {
    let _busy = supervisor
        .snapshotting
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if supervisor.paused.load(Ordering::SeqCst) {
        return Response::Ok;
    }
    match supervisor.with_machine(|m| m.pause()) {
        Ok(_) => {
            supervisor.set_paused(true);
            tracing::info!("VM {} paused", supervisor.vm_id);
            Response::Ok
        }
        Err(e) => refuse(ErrorKind::Internal, format!("cannot pause: {e}")),
    }
}

/// Restarts a paused guest. Resuming a running guest does nothing.
pub(crate) fn resume(supervisor: &Arc<Supervisor>) -> Response {
    let _busy = supervisor
        .snapshotting
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if !supervisor.paused.load(Ordering::SeqCst) {
        return Response::Ok;
    }
    match supervisor.continue_guest() {
        Ok(()) => {
            supervisor.set_paused(false);
            tracing::info!("VM {} resumed", supervisor.vm_id);
            Response::Ok
        }
        Err(e) => refuse(ErrorKind::Internal, format!("cannot resume: {e}")),
    }
}

/// Takes a snapshot into `dir` (see the module documentation). `meta` is the SDK's
/// description, written as `snapshot.json` with the measured `stats` added.
pub(crate) fn snapshot(
    supervisor: &Arc<Supervisor>,
    dir: &str,
    keep_paused: bool,
    meta: Value,
) -> Response {
    let Ok(_busy) = supervisor.snapshotting.try_lock() else {
        return refuse(
            ErrorKind::InvalidRequest,
            format!(
                "a snapshot of VM {} is already being taken; wait for it to finish",
                supervisor.vm_id
            ),
        );
    };
    if supervisor.stopping.load(Ordering::SeqCst) {
        let message = format!("VM {} is stopping", supervisor.vm_id);
        return refuse(ErrorKind::VmNotRunning, message);
    }
    let dest = PathBuf::from(dir);
    if !dest.is_absolute() || dest.file_name().is_none() || dest.exists() {
        return refuse(
            ErrorKind::Validation,
            format!("{dir} must be an absolute path that does not exist yet"),
        );
    }
    let partial = partial_dir(&dest);
    let was_paused = supervisor.paused.load(Ordering::SeqCst);
    let started = Instant::now();
    let result = write_snapshot(supervisor, &partial, &dest, was_paused, meta, started);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
        let _ = std::fs::remove_file(supervisor.paths.migration_socket());
    }
    // However the snapshot went, the guest carries on as it was (or stays paused if asked).
    let resumed = if was_paused || keep_paused {
        supervisor.set_paused(true);
        // QEMU refuses to migrate a VM again straight after a migration ("paused due to
        // previous migration") and keeps its disk released until the VM runs: a brief run
        // and stop brings it back to a plain pause, ready for the next snapshot.
        supervisor.with_machine(|m| {
            m.resume()?;
            m.pause()
        })
    } else {
        supervisor.continue_guest()
    };
    match (result, resumed) {
        (Ok(stats), Ok(())) => {
            tracing::info!(
                "VM {}: snapshot {} taken ({} ms, {} bytes)",
                supervisor.vm_id,
                dest.display(),
                stats.save_ms,
                stats.memory_bytes
            );
            Response::Snapshot(stats)
        }
        (Ok(_), Err(e)) => refuse(
            ErrorKind::Internal,
            format!("the snapshot was taken but the VM could not be resumed: {e}"),
        ),
        (Err(e), _) => refuse(ErrorKind::Io, format!("snapshot failed: {e}")),
    }
}

/// The hidden directory a snapshot is assembled in: beside its destination (same
/// filesystem, so the final rename is atomic), named after the supervisor's pid so that a
/// leftover of a killed supervisor can be told from one in progress.
pub fn partial_dir(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
    dest.with_file_name(format!(
        ".{}.partial-{}",
        name.unwrap_or_default(),
        std::process::id()
    ))
}

fn write_snapshot(
    supervisor: &Supervisor,
    partial: &Path,
    dest: &Path,
    was_paused: bool,
    mut meta: Value,
    started: Instant,
) -> Result<SnapshotStats> {
    let io =
        |what: &str, path: &Path, e| SupervisorError::host(format!("{what} {}", path.display()), e);
    smolvm_sys::fs::create_dir_private(partial).map_err(|e| io("creating", partial, e))?;
    let files = SnapshotPaths::new(partial);
    let (stream, vmm_end) =
        UnixStream::pair().map_err(|e| SupervisorError::host("cannot create a socket pair", e))?;
    supervisor.with_machine(|m| {
        if !was_paused {
            m.pause()?;
        }
        m.save_state(vmm_end.into())
    })?;
    let stopped_at = Instant::now();
    let (raw_bytes, memory_bytes) =
        compress_stream(stream, &files.memory()).map_err(|e| io("writing", &files.memory(), e))?;
    wait_for_migration(supervisor)?;
    let disk_bytes = copy_boot_files(supervisor, &files)?;
    let paused_ms = stopped_at.elapsed().as_millis() as u64;

    let stats = SnapshotStats {
        raw_bytes,
        memory_bytes,
        disk_bytes,
        paused_ms,
        save_ms: started.elapsed().as_millis() as u64,
    };
    if let Value::Object(map) = &mut meta {
        map.insert(
            "stats".into(),
            serde_json::to_value(&stats).expect("serialises"),
        );
    }
    let json = serde_json::to_vec_pretty(&meta).expect("serialises");
    smolvm_sys::fs::write_atomic(&files.meta(), &json)
        .map_err(|e| io("writing", &files.meta(), e))?;
    sync_dir(partial).map_err(|e| io("syncing", partial, e))?;
    std::fs::rename(partial, dest).map_err(|e| io("renaming into", dest, e))?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent).map_err(|e| io("syncing", parent, e))?;
    }
    Ok(stats)
}

/// Compresses the migration stream into `path` (durably); returns the raw and compressed
/// sizes.
fn compress_stream(mut stream: UnixStream, path: &Path) -> std::io::Result<(u64, u64)> {
    let file = smolvm_sys::fs::create_with_mode(path, smolvm_sys::fs::PRIVATE_FILE)?;
    let mut encoder = zstd::stream::Encoder::new(std::io::BufWriter::new(file), ZSTD_LEVEL)?;
    encoder.include_checksum(true)?;
    encoder.include_contentsize(false)?;
    let mut raw = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        raw += n as u64;
        encoder.write_all(&buf[..n])?;
    }
    let file = encoder.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((raw, file.metadata()?.len()))
}

/// Waits until QEMU says the migration completed (its stream has already ended).
fn wait_for_migration(supervisor: &Supervisor) -> Result<()> {
    let deadline = Instant::now() + SAVE_TIMEOUT;
    loop {
        match supervisor.with_machine(|m| m.save_status())? {
            SaveStatus::Completed => return Ok(()),
            SaveStatus::Failed(reason) => return Err(SupervisorError::Load(reason)),
            SaveStatus::InProgress if Instant::now() > deadline => {
                return Err(SupervisorError::Timeout {
                    what: "saving the machine's state",
                    limit: SAVE_TIMEOUT,
                    hint: "",
                })
            }
            SaveStatus::InProgress => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Puts what the guest booted from into the snapshot: hard links to the kernel and root
/// filesystem, and a copy of the disk overlay. Returns the overlay's size.
fn copy_boot_files(supervisor: &Supervisor, files: &SnapshotPaths) -> Result<u64> {
    let link = |source: &Path, dest: &Path| {
        link_or_copy(source, dest).map_err(|e| {
            SupervisorError::host(format!("copying {} into the snapshot", source.display()), e)
        })
    };
    link(&supervisor.config.kernel_path, &files.kernel())?;
    match &supervisor.config.rootfs {
        RootFs::Initramfs(path) => {
            link(path, &files.initrd())?;
            Ok(0)
        }
        RootFs::Disk(base) => {
            let vm = &supervisor.paths;
            // The overlay names its base relatively when the VM has a link to it.
            let vm_base = vm.base_link();
            link(
                if vm_base.is_file() { &vm_base } else { base },
                &files.base(),
            )?;
            let copied = std::fs::copy(vm.overlay(), files.overlay())
                .map_err(|e| SupervisorError::host("copying the disk overlay", e))?;
            // fs::copy keeps the source's mode, which an older version made 0644.
            std::fs::File::open(files.overlay())
                .and_then(|f| {
                    use std::os::unix::fs::PermissionsExt;
                    f.set_permissions(std::fs::Permissions::from_mode(
                        smolvm_sys::fs::PRIVATE_FILE,
                    ))?;
                    f.sync_all()
                })
                .map_err(|e| SupervisorError::host("syncing the disk overlay copy", e))?;
            Ok(copied)
        }
    }
}
