//! Starting a VM from a snapshot: QEMU is started with `-incoming fd:3`, reading the
//! migration stream from a pipe that this module fills from the snapshot's compressed memory
//! file (the zstd frame's checksum verifies it as it streams), or, for a template, straight
//! from its uncompressed memory file (checked against its recorded size and CRC-32 while QEMU
//! reads it). A corrupt or truncated file fails the start (and QEMU is killed): it never
//! yields a half-restored guest.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::error::{Result, SupervisorError};
use super::Supervisor;
use crate::paths::SnapshotPaths;

/// Pipe buffer between the feeder and QEMU.
const PIPE_BYTES: usize = 1 << 20;
/// How long loading a snapshot may take.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Streams a snapshot's memory into QEMU.
pub(crate) struct Incoming {
    feeder: JoinHandle<Result<u64>>,
}

/// What QEMU will read, set up before it is spawned.
pub(crate) struct Prepared {
    work: Work,
}

enum Work {
    /// Decompress `file` into the pipe's `write` end.
    Feed {
        write: OwnedFd,
        file: File,
        memory: PathBuf,
    },
    /// QEMU reads the raw file directly; check it against its recorded size and CRC.
    Verify { raw: PathBuf, check: RawCheck },
}

/// Opens a snapshot file without following a symlink: a snapshot directory holds only
/// regular files of its own.
fn open_own(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| SupervisorError::host(format!("cannot open {}", path.display()), e))?;
    match file.metadata() {
        Ok(meta) if meta.is_file() => Ok(file),
        _ => Err(SupervisorError::DamagedSnapshot(format!(
            "{} is not a regular file",
            path.display()
        ))),
    }
}

/// Arranges for QEMU to load the snapshot in `dir`: its uncompressed memory file when it has
/// one (templates do: loading skips decompression and a pipe), else its compressed one.
/// Returns the descriptor QEMU reads the stream from (`-incoming fd:N`).
pub(crate) fn prepare(dir: &Path) -> Result<(OwnedFd, Prepared)> {
    let files = SnapshotPaths::new(dir);
    let raw_check = std::fs::read(files.memory_raw_check())
        .ok()
        .and_then(|b| serde_json::from_slice::<RawCheck>(&b).ok());
    let (qemu_end, work) = match raw_check {
        Some(check) if files.memory_raw().is_file() => (
            OwnedFd::from(open_own(&files.memory_raw())?),
            Work::Verify {
                raw: files.memory_raw(),
                check,
            },
        ),
        _ => {
            let file = open_own(&files.memory())?;
            let (read, write) = pipe()?;
            // A large pipe: QEMU reads the stream in small pieces, and each refill of a
            // 64 KiB pipe costs a wake-up of the feeder.
            let _ = smolvm_sys::pipe::set_capacity(&write, PIPE_BYTES);
            let work = Work::Feed {
                write,
                file,
                memory: files.memory(),
            };
            (read, work)
        }
    };
    Ok((qemu_end, Prepared { work }))
}

impl Prepared {
    /// Once QEMU runs: starts feeding (or verifying).
    pub(crate) fn start(self) -> Result<Incoming> {
        let work = self.work;
        let feeder = std::thread::Builder::new()
            .name("snapshot-feeder".into())
            .spawn(move || match work {
                Work::Feed {
                    write,
                    file,
                    memory,
                } => feed(file, File::from(write), &memory),
                Work::Verify { raw, check } => verify(&raw, &check),
            })
            .map_err(|e| SupervisorError::host("cannot start a thread", e))?;
        Ok(Incoming { feeder })
    }
}

/// What a template's uncompressed memory file must be (`memory.raw.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RawCheck {
    /// Its size.
    pub bytes: u64,
    /// CRC-32 of its content.
    pub crc32: u32,
}

/// Writes the uncompressed memory file of the snapshot in `dir` (and its check), so that
/// restores from it skip decompression. Used for templates, which are restored often.
pub fn unpack_memory(dir: &Path) -> std::io::Result<RawCheck> {
    let files = SnapshotPaths::new(dir);
    let mut raw =
        smolvm_sys::fs::AtomicFile::create(&files.memory_raw(), smolvm_sys::fs::PRIVATE_FILE)?;
    {
        let mut decoder = zstd::stream::Decoder::new(File::open(files.memory())?)?;
        let mut out = std::io::BufWriter::new(raw.file());
        let mut hasher = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = std::io::Read::read(&mut decoder, &mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut out, &buf[..n])?;
            bytes += n as u64;
        }
        std::io::Write::flush(&mut out)?;
        let check = RawCheck {
            bytes,
            crc32: hasher.finalize(),
        };
        // The check first: a memory file without its check is unpacked again, never trusted.
        smolvm_sys::fs::write_atomic(
            &files.memory_raw_check(),
            &serde_json::to_vec(&check).expect("serialises"),
        )?;
        drop(out);
        raw.commit()?;
        Ok(check)
    }
}

/// Decompresses `file` into QEMU's pipe.
fn feed(file: File, mut pipe: File, memory: &Path) -> Result<u64> {
    let corrupt = |e: std::io::Error| {
        SupervisorError::DamagedSnapshot(format!(
            "the snapshot file {} is corrupt or truncated ({e}); take the snapshot again",
            memory.display()
        ))
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
            // QEMU gave up on the stream: a damaged file is the likely reason, and reading
            // the rest checks that against the frame's checksum.
            std::io::copy(&mut decoder, &mut std::io::sink()).map_err(corrupt)?;
            return Err(SupervisorError::Load(format!(
                "QEMU could not load the snapshot file {} ({e}); see supervisor.log",
                memory.display()
            )));
        }
        total += n as u64;
    }
}

/// Checks a raw memory file against its recorded size and CRC while QEMU reads it.
fn verify(raw: &Path, check: &RawCheck) -> Result<u64> {
    let bad = |why: String| {
        SupervisorError::DamagedSnapshot(format!(
            "the template memory file {} is damaged ({why}); remove {} to have it rebuilt",
            raw.display(),
            raw.parent()
                .map_or_else(String::new, |d| d.display().to_string())
        ))
    };
    let mut file = File::open(raw).map_err(|e| bad(e.to_string()))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = std::io::Read::read(&mut file, &mut buf).map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    if bytes != check.bytes {
        return Err(bad(format!("{bytes} bytes, expected {}", check.bytes)));
    }
    if hasher.finalize() != check.crc32 {
        return Err(bad("checksum mismatch".into()));
    }
    Ok(bytes)
}

impl Incoming {
    /// Waits until QEMU has loaded the whole stream, then starts the guest. A feeder error
    /// (a corrupt file) wins over QEMU's own complaint, as it names the file.
    pub(crate) fn finish(self, supervisor: &Supervisor, qemu: &mut Child) -> Result<()> {
        let deadline = Instant::now() + LOAD_TIMEOUT;
        loop {
            if self.feeder.is_finished() {
                break;
            }
            if let Ok(Some(status)) = qemu.try_wait() {
                let fed = self.feeder.join().unwrap_or_else(|_| {
                    Err(SupervisorError::Load("the snapshot feeder panicked".into()))
                });
                fed?;
                return Err(SupervisorError::Load(format!(
                    "QEMU could not load the snapshot ({status}); see supervisor.log"
                )));
            }
            if Instant::now() > deadline {
                return Err(SupervisorError::Timeout {
                    what: "loading the snapshot",
                    limit: LOAD_TIMEOUT,
                    hint: "",
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let fed = self
            .feeder
            .join()
            .unwrap_or_else(|_| Err(SupervisorError::Load("the snapshot feeder panicked".into())));
        let bytes = fed?;
        // The stream is all in; QEMU may still be applying its tail.
        loop {
            match supervisor.with_machine(|m| m.is_loading()) {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    if let Ok(Some(status)) = qemu.try_wait() {
                        return Err(SupervisorError::Load(format!(
                            "QEMU could not load the snapshot ({status}): {e}; see supervisor.log"
                        )));
                    }
                    return Err(e);
                }
            }
            if Instant::now() > deadline {
                return Err(SupervisorError::Timeout {
                    what: "loading the snapshot",
                    limit: LOAD_TIMEOUT,
                    hint: "",
                });
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        tracing::info!("VM {}: loaded {bytes} bytes of snapshot", supervisor.vm_id);
        supervisor.with_machine(|m| m.resume())
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    smolvm_sys::pipe::pipe().map_err(|e| SupervisorError::host("cannot create a pipe", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unpacked_memory_file_verifies_until_it_is_damaged() {
        let dir = std::env::temp_dir().join(format!("smolvm-raw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = SnapshotPaths::new(&dir);
        let stream: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        std::fs::write(files.memory(), zstd::encode_all(&stream[..], 1).unwrap()).unwrap();
        let check = unpack_memory(&dir).unwrap();
        assert_eq!(check.bytes, stream.len() as u64);
        assert_eq!(std::fs::read(files.memory_raw()).unwrap(), stream);
        assert_eq!(
            verify(&files.memory_raw(), &check).unwrap(),
            stream.len() as u64
        );

        let mut damaged = stream.clone();
        damaged[1000] ^= 1;
        std::fs::write(files.memory_raw(), &damaged).unwrap();
        let err = verify(&files.memory_raw(), &check).unwrap_err().to_string();
        assert!(
            err.contains("memory.raw") && err.contains("checksum"),
            "{err}"
        );
        std::fs::write(files.memory_raw(), &stream[..10]).unwrap();
        let err = verify(&files.memory_raw(), &check).unwrap_err().to_string();
        assert!(err.contains("bytes, expected"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
