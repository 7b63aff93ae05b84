//! Files in and out of a VM: bytes, single files and whole trees, streamed in bounded memory
//! on both sides. Guest writes are atomic (the agent writes a temp file, fsyncs and renames);
//! local writes are too (temp file in the destination folder, fsync, rename), so a failed
//! transfer never leaves a partial file at its destination.
//!
//! The guest is hostile: what it announces (sizes, modes, tree listings) is checked before
//! anything is written, and what it sends is counted while it arrives. Downloads drop
//! setuid, setgid and sticky bits unless asked, never write more than announced or than the
//! destination's free space allows, and give up when the guest stalls. Trees are checked
//! by [`plan`] and built by `local`; see [`SmolVm::download_dir_with`].

mod local;
pub mod plan;
mod tree;

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smolvm_protocol::{AgentRequest, FileKind, FrameKind, Response};

use crate::client::{Call, Connection};
use crate::error::{Error, Result, TransferRule};
use crate::vm::SmolVm;

/// Size of the chunks files are sent in.
const CHUNK: usize = 1 << 20;
const ACTION: &str = "Cannot transfer files";
/// Most entries a tree download accepts by default.
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;
/// Most bytes of listing (JSON) a tree download accepts, whatever `max_entries` says: it is
/// held in memory while the listing is checked.
pub const MAX_LISTING_BYTES: u64 = 256 << 20;
/// Default time a download waits for the guest's next frame before giving up.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest file [`SmolVm::read_file`] reads into memory.
pub const READ_FILE_MAX: u64 = 1 << 30;
/// How long an upload waits for the guest to confirm the file is in place.
const UPLOAD_ANSWER_WAIT: Duration = Duration::from_secs(120);

/// What [`SmolVm::stat`] found at a guest path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFileInfo {
    /// File, directory, symlink or other.
    pub kind: FileKind,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
}

/// How a download treats the destination and what it accepts from the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOptions {
    /// Tree downloads: when the destination exists and is not empty (or is not a directory),
    /// replace it — its old content is swapped out atomically and deleted, nothing is
    /// merged. Without it such a download is refused before anything is fetched. (Single
    /// files always replace an existing file, atomically.)
    pub overwrite: bool,
    /// Keep the setuid, setgid and sticky bits the guest gave; dropped by default, so that a
    /// guest cannot hand the caller a setuid binary.
    pub keep_special_bits: bool,
    /// Most bytes of file content accepted (sum of a tree's files). Whatever it says, a
    /// download is refused when its announced size does not fit in the destination
    /// filesystem's free space less 16 MiB.
    pub max_bytes: Option<u64>,
    /// Most entries of a tree (default [`DEFAULT_MAX_ENTRIES`]).
    pub max_entries: usize,
    /// Give up when the guest sends nothing for this long (default
    /// [`DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Give up when the whole download takes longer (default: no limit).
    pub timeout: Option<Duration>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            overwrite: false,
            keep_special_bits: false,
            max_bytes: None,
            max_entries: DEFAULT_MAX_ENTRIES,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            timeout: None,
        }
    }
}

/// What one file's download accepts from the guest.
struct ReceiveLimit {
    /// Most bytes accepted.
    max_bytes: u64,
    /// Rule reported past `max_bytes`.
    rule: TransferRule,
    /// Where `max_bytes` comes from, for the message.
    why: String,
    /// Idle timeout and overall deadline.
    idle: Duration,
    deadline: Option<Instant>,
}

fn guest_absolute(path: &str) -> Result<()> {
    if path.starts_with('/') && !path.contains('\0') {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field: "guest path",
            reason: format!("{path:?} is not an absolute guest path; write it from the root, e.g. /root/file.txt"),
        })
    }
}

fn io_error(context: String) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Io { context, source }
}

/// The name part of a guest path.
fn guest_file_name(path: &str) -> Option<&str> {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
}

/// Hint for a download refused for its size.
fn size_hint(rule: TransferRule) -> String {
    match rule {
        TransferRule::NoSpace => "free some space or download to another filesystem".into(),
        _ => "raise max_bytes if the file is expected to be this large".into(),
    }
}

/// The cap of a download into `dir`: `max_bytes` or the free space less a margin.
fn space_limit(dir: &Path, max_bytes: Option<u64>) -> Result<(u64, TransferRule, String)> {
    let free = local::available_bytes(dir)
        .map_err(io_error(format!(
            "reading the free space of {}",
            dir.display()
        )))?
        .saturating_sub(local::SPACE_MARGIN);
    Ok(match max_bytes {
        Some(max) if max <= free => (max, TransferRule::TooLarge, "max_bytes".into()),
        _ => (
            free,
            TransferRule::NoSpace,
            format!("the free space of {} less 16 MiB", dir.display()),
        ),
    })
}

/// Writes a local temp file beside `dest` with `fill`, gives it the mode `fill` returns
/// (through its descriptor), then renames it into place (a symlink at `dest` is replaced,
/// never followed).
fn write_local_atomically(dest: &Path, fill: impl FnOnce(&mut File) -> Result<u32>) -> Result<()> {
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.smolvm-{:08x}.tmp",
        smolvm_sys::random::random_u64() as u32
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(io_error(format!("creating {}", tmp.display())))?;
        let mode = fill(&mut file)?;
        local::fchmod(&file, mode)
            .map_err(io_error(format!("setting the mode of {}", dest.display())))?;
        file.sync_all()
            .map_err(io_error(format!("writing {}", dest.display())))?;
        std::fs::rename(&tmp, dest).map_err(io_error(format!("renaming into {}", dest.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

impl SmolVm {
    fn files_conn(&self) -> Result<Arc<Connection>> {
        self.conn(ACTION)
    }

    fn simple(&self, request: &AgentRequest) -> Result<Response> {
        match self
            .files_conn()?
            .call(request, Some(std::time::Duration::from_secs(120)))?
        {
            Response::Error { kind, message } => {
                Err(self.unexpected(Response::Error { kind, message }))
            }
            other => Ok(other),
        }
    }

    fn protocol_error(&self, source: smolvm_protocol::ProtocolError) -> Error {
        Error::Protocol {
            vm_id: self.vm_id().into(),
            source,
        }
    }

    /// A transfer refusal about `guest_path`.
    fn refused(&self, guest_path: &str, rule: TransferRule, reason: String, hint: String) -> Error {
        Error::Transfer {
            what: format!("download of {guest_path} from VM {}", self.vm_id()),
            rule,
            reason,
            hint,
        }
    }

    /// The next frame of a download, or a [`TransferRule::Stalled`] error when the guest
    /// sends nothing for `idle` or the `deadline` passes. The guest's reading is cancelled
    /// then (it stops at its next chunk).
    fn next_download_frame(
        &self,
        call: &Call,
        guest_path: &str,
        idle: Duration,
        deadline: Option<Instant>,
    ) -> Result<smolvm_protocol::Frame> {
        let wait_until = Instant::now() + idle;
        let until = deadline.map_or(wait_until, |d| d.min(wait_until));
        match call.next(Some(until))? {
            Some(frame) => Ok(frame),
            None => {
                cancel(call);
                Err(self.refused(
                    guest_path,
                    TransferRule::Stalled,
                    if deadline.is_some_and(|d| d <= Instant::now()) {
                        "the download's timeout passed".into()
                    } else {
                        format!("the guest sent nothing for {idle:?}")
                    },
                    "check that the guest is healthy, or raise idle_timeout / timeout".into(),
                ))
            }
        }
    }

    /// What is at `guest_path` (symlinks not followed); `None` when nothing is.
    pub fn stat(&self, guest_path: &str) -> Result<Option<GuestFileInfo>> {
        guest_absolute(guest_path)?;
        match self.simple(&AgentRequest::Stat {
            path: guest_path.into(),
        })? {
            Response::FileInfo { kind, mode, size } => {
                Ok(kind.map(|kind| GuestFileInfo { kind, mode, size }))
            }
            other => Err(self.unexpected(other)),
        }
    }

    /// Streams `reader` into the guest file `guest_path` (exact path), atomically.
    fn send_file(
        &self,
        guest_path: &str,
        mode: u32,
        parents: bool,
        reader: &mut dyn Read,
    ) -> Result<()> {
        guest_absolute(guest_path)?;
        let conn = self.files_conn()?;
        let call = conn.start_request(&AgentRequest::WriteFile {
            path: guest_path.into(),
            mode,
            parents,
        })?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Cancel: the agent removes its temp file.
                    cancel(&call);
                    return Err(Error::io(format!("reading the source of {guest_path}"), e));
                }
            };
            call.send(FrameKind::Stdin, buf[..n].to_vec())?;
            // The guest may have given up (disk full, permission denied): stop sending then.
            if let Some(frame) = call.try_next()? {
                if frame.kind == FrameKind::Response {
                    return self.expect_ok(frame.to_response());
                }
            }
        }
        call.send(FrameKind::Stdin, Vec::new())?;
        let deadline = Instant::now() + UPLOAD_ANSWER_WAIT;
        loop {
            match call.next(Some(deadline))? {
                Some(frame) if frame.kind == FrameKind::Response => {
                    return self.expect_ok(frame.to_response())
                }
                Some(_) => {}
                None => {
                    return Err(Error::Disconnected {
                        vm_id: self.vm_id().into(),
                        reason: format!(
                            "the guest did not confirm writing {guest_path} within {UPLOAD_ANSWER_WAIT:?}"
                        ),
                    })
                }
            }
        }
    }

    fn expect_ok(
        &self,
        response: std::result::Result<Response, smolvm_protocol::ProtocolError>,
    ) -> Result<()> {
        match response.map_err(|source| self.protocol_error(source))? {
            Response::Ok => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }

    /// Streams the guest file `guest_path` into `sink`, accepting at most `limit.max_bytes`
    /// (checked against the size the guest announces first, then against every byte that
    /// arrives); returns its mode as the guest gave it.
    fn receive_file(
        &self,
        guest_path: &str,
        sink: &mut dyn Write,
        limit: &ReceiveLimit,
    ) -> Result<u32> {
        guest_absolute(guest_path)?;
        let conn = self.files_conn()?;
        let call = conn.start_request(&AgentRequest::ReadFile {
            path: guest_path.into(),
        })?;
        let too_big = |verb: &str, n: u64| {
            cancel(&call);
            self.refused(
                guest_path,
                limit.rule,
                format!(
                    "the guest {verb} {n} bytes, over the limit of {} bytes ({})",
                    limit.max_bytes, limit.why
                ),
                size_hint(limit.rule),
            )
        };
        let mut received = 0u64;
        loop {
            let frame = self.next_download_frame(&call, guest_path, limit.idle, limit.deadline)?;
            match frame.kind {
                FrameKind::Stdout => {
                    received = received.saturating_add(frame.payload.len() as u64);
                    if received > limit.max_bytes {
                        return Err(too_big("sent", received));
                    }
                    sink.write_all(&frame.payload)
                        .map_err(io_error(format!("writing {guest_path} locally")))?;
                }
                // The agent announces the file's size before its content (see
                // `AgentRequest::ReadFile`): refuse at once what cannot fit, e.g. a sparse 1 TiB
                // file, instead of discovering it after writing the free space full.
                FrameKind::Stderr => {
                    if let Ok(Response::FileInfo { size, .. }) =
                        serde_json::from_slice::<Response>(&frame.payload)
                    {
                        if size > limit.max_bytes {
                            return Err(too_big("announced", size));
                        }
                    }
                }
                FrameKind::Response => {
                    return match frame
                        .to_response()
                        .map_err(|source| self.protocol_error(source))?
                    {
                        Response::FileInfo { mode, .. } => Ok(mode),
                        other => Err(self.unexpected(other)),
                    }
                }
                _ => {}
            }
        }
    }

    /// Writes `data` to `guest_path` with permission bits `mode`, atomically; missing parent
    /// directories are created.
    pub fn write_file(&self, guest_path: &str, data: &[u8], mode: u32) -> Result<()> {
        self.send_file(guest_path, mode, true, &mut &data[..])
    }

    /// Reads the whole guest file `guest_path` into memory; files over [`READ_FILE_MAX`]
    /// (1 GiB) are refused (use [`SmolVm::download_file`] for those).
    pub fn read_file(&self, guest_path: &str) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        let limit = ReceiveLimit {
            max_bytes: READ_FILE_MAX,
            rule: TransferRule::TooLarge,
            why: "read_file's in-memory cap; use download_file".into(),
            idle: DEFAULT_IDLE_TIMEOUT,
            deadline: None,
        };
        self.receive_file(guest_path, &mut data, &limit)?;
        Ok(data)
    }

    /// Copies the local file `local` to `guest_path` (a trailing `/` or an existing guest
    /// directory appends the file name), keeping its mode and creating missing parent
    /// directories. Returns the guest path written.
    pub fn upload_file(&self, local: &Path, guest_path: &str) -> Result<String> {
        self.upload_file_with(local, guest_path, true)
    }

    /// [`SmolVm::upload_file`], creating missing parents only when `create_parents`.
    pub fn upload_file_with(
        &self,
        local: &Path,
        guest_path: &str,
        create_parents: bool,
    ) -> Result<String> {
        guest_absolute(guest_path)?;
        let mut file = File::open(local).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound {
                what: "local file",
                name: local.display().to_string(),
                hint: "check the path".into(),
            },
            _ => Error::io(format!("opening {}", local.display()), e),
        })?;
        let meta = file
            .metadata()
            .map_err(io_error(format!("reading {}", local.display())))?;
        if !meta.is_file() {
            return Err(Error::InvalidConfig {
                field: "local path",
                reason: format!(
                    "{} is not a regular file (use upload_dir for directories)",
                    local.display()
                ),
            });
        }
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let target = if guest_path.ends_with('/')
            || self
                .stat(guest_path)?
                .is_some_and(|i| i.kind == FileKind::Dir)
        {
            format!("{}/{name}", guest_path.trim_end_matches('/'))
        } else {
            guest_path.to_string()
        };
        self.send_file(
            &target,
            meta.permissions().mode() & 0o7777,
            create_parents,
            &mut file,
        )?;
        Ok(target)
    }

    /// Copies the guest file `guest_path` to `local` (an existing local directory or a
    /// trailing `/` appends the file name) with the default [`DownloadOptions`]: mode kept
    /// without setuid/setgid/sticky bits, missing parent directories created, an existing
    /// file replaced atomically. Returns the local path written.
    pub fn download_file(&self, guest_path: &str, local: &Path) -> Result<PathBuf> {
        self.download_file_with(guest_path, local, &DownloadOptions::default())
    }

    /// [`SmolVm::download_file`] with `options` (`keep_special_bits`, `max_bytes`,
    /// `idle_timeout`, `timeout`; `overwrite` and `max_entries` concern trees only). A file
    /// whose announced or received size is over `max_bytes` or over the destination's free
    /// space less 16 MiB is refused and nothing is left behind.
    pub fn download_file_with(
        &self,
        guest_path: &str,
        local: &Path,
        options: &DownloadOptions,
    ) -> Result<PathBuf> {
        guest_absolute(guest_path)?;
        let name = guest_file_name(guest_path).unwrap_or("download");
        let dest = if local.is_dir() || local.as_os_str().to_string_lossy().ends_with('/') {
            local.join(name)
        } else {
            local.to_path_buf()
        };
        let parent = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .map_err(io_error(format!("creating {}", parent.display())))?;
        let (max_bytes, rule, why) = space_limit(parent, options.max_bytes)?;
        let limit = ReceiveLimit {
            max_bytes,
            rule,
            why,
            idle: options.idle_timeout,
            deadline: options.timeout.map(|t| Instant::now() + t),
        };
        write_local_atomically(&dest, |file| {
            let mut writer = io::BufWriter::with_capacity(CHUNK, &mut *file);
            let mode = self.receive_file(guest_path, &mut writer, &limit)?;
            writer
                .flush()
                .map_err(io_error(format!("writing {}", dest.display())))?;
            Ok(plan::local_mode(mode, options.keep_special_bits))
        })?;
        Ok(dest)
    }
}

/// Asks the agent to stop serving `call` (it stops reading at its next chunk and removes any
/// temp file).
fn cancel(call: &Call) {
    let _ = call.send(FrameKind::Signal, libc::SIGKILL.to_le_bytes().to_vec());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_must_be_absolute() {
        assert!(guest_absolute("/root/x").is_ok());
        let err = guest_absolute("root/x").unwrap_err().to_string();
        assert!(err.contains("not an absolute guest path"), "{err}");
        assert_eq!(guest_file_name("/a/b.txt"), Some("b.txt"));
        assert_eq!(guest_file_name("/a/dir/"), Some("dir"));
    }
}
