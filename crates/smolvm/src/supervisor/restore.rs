//! Starting a VM from a snapshot: QEMU is started with `-incoming fd:3`, reading the
//! migration stream from a pipe that this module fills from the snapshot's compressed memory
//! file. The zstd frame's checksum verifies the file as it streams; a corrupt or truncated
//! file fails the start (and QEMU is killed), it never yields a half-restored guest.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::Supervisor;

/// The descriptor number QEMU reads the stream from.
const INCOMING_FD: i32 = 3;
/// Pipe buffer between the feeder and QEMU.
const PIPE_BYTES: libc::c_int = 1 << 20;
/// How long loading a snapshot may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Streams a snapshot's memory into QEMU.
pub(crate) struct Incoming {
    feeder: JoinHandle<Result<u64, String>>,
}

/// Arranges for `command` (QEMU) to load the migration stream of `memory` and starts
/// streaming it. Call before spawning `command`.
pub(crate) fn prepare(command: &mut Command, memory: &Path) -> Result<PipeEnds, String> {
    let file = File::open(memory).map_err(|e| format!("cannot open {}: {e}", memory.display()))?;
    let (read, write) = pipe()?;
    // A large pipe: QEMU reads the stream in small pieces, and each refill of a 64 KiB pipe
    // costs a wake-up of the feeder.
    // SAFETY: fcntl on a descriptor we own, with an integer argument.
    unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    let raw = read.as_raw_fd();
    command.args(["-incoming", &format!("fd:{INCOMING_FD}")]);
    // SAFETY: dup2 and fcntl are async-signal-safe and take plain integers; `raw` stays open
    // in the parent until the child has been spawned (the caller keeps `read` until then).
    unsafe {
        command.pre_exec(move || {
            if raw == INCOMING_FD {
                // dup2 onto itself would keep close-on-exec set.
                if libc::fcntl(raw, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, INCOMING_FD) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(PipeEnds {
        read,
        write,
        file,
        memory: memory.to_path_buf(),
    })
}

/// The pipe between the feeder and QEMU, and the file to feed.
pub(crate) struct PipeEnds {
    read: OwnedFd,
    write: OwnedFd,
    file: File,
    memory: PathBuf,
}

impl PipeEnds {
    /// Once QEMU runs: closes our copy of its end and starts feeding the stream.
    pub(crate) fn start(self) -> Result<Incoming, String> {
        drop(self.read);
        let (file, memory) = (self.file, self.memory);
        let mut pipe = File::from(self.write);
        let feeder = std::thread::Builder::new()
            .name("snapshot-feeder".into())
            .spawn(move || {
                let corrupt = |e: std::io::Error| {
                    format!(
                        "the snapshot file {} is corrupt or truncated ({e}); take the snapshot again",
                        memory.display()
                    )
                };
                let mut decoder = zstd::stream::Decoder::new(file).map_err(corrupt)?;
                let mut buf = vec![0u8; 1 << 20];
                let mut total = 0u64;
                loop {
                    let n = match std::io::Read::read(&mut decoder, &mut buf) {
                        Ok(0) => return Ok(total),
                        Ok(n) => n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(corrupt(e)),
                    };
                    if let Err(e) = std::io::Write::write_all(&mut pipe, &buf[..n]) {
                        // QEMU gave up on the stream: a damaged file is the likely reason,
                        // and reading the rest checks that against the frame's checksum.
                        std::io::copy(&mut decoder, &mut std::io::sink()).map_err(corrupt)?;
                        return Err(format!(
                            "QEMU could not load the snapshot file {} ({e}); see supervisor.log",
                            memory.display()
                        ));
                    }
                    total += n as u64;
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(Incoming { feeder })
    }
}

impl Incoming {
    /// Waits until QEMU has loaded the whole stream, then starts the guest. A feeder error
    /// (a corrupt file) wins over QEMU's own complaint, as it names the file.
    pub(crate) fn finish(self, supervisor: &Supervisor, qemu: &mut Child) -> Result<(), String> {
        let deadline = Instant::now() + LOAD_TIMEOUT;
        loop {
            if self.feeder.is_finished() {
                break;
            }
            if let Ok(Some(status)) = qemu.try_wait() {
                let fed = self
                    .feeder
                    .join()
                    .unwrap_or_else(|_| Err("feeder panicked".into()));
                fed?;
                return Err(format!(
                    "QEMU could not load the snapshot ({status}); see supervisor.log"
                ));
            }
            if Instant::now() > deadline {
                return Err(format!("loading the snapshot took over {LOAD_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let fed = self
            .feeder
            .join()
            .unwrap_or_else(|_| Err("feeder panicked".into()));
        let bytes = fed?;
        // The stream is all in; QEMU may still be applying its tail.
        loop {
            let state = supervisor.with_qmp(|qmp| qmp.run_state());
            match state.as_deref() {
                Ok("inmigrate") => {}
                Ok(_) => break,
                Err(e) => {
                    if let Ok(Some(status)) = qemu.try_wait() {
                        return Err(format!(
                            "QEMU could not load the snapshot ({status}): {e}; see supervisor.log"
                        ));
                    }
                    return Err(e.clone());
                }
            }
            if Instant::now() > deadline {
                return Err(format!("loading the snapshot took over {LOAD_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        tracing::info!("VM {}: loaded {bytes} bytes of snapshot", supervisor.vm_id);
        supervisor.with_qmp(|qmp| qmp.execute("cont", None).map(drop))
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(format!(
            "cannot create a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
