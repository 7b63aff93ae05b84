//! Files in and out of a VM: bytes, single files and whole trees, streamed in bounded memory
//! on both sides. Guest writes are atomic (the agent writes a temp file, fsyncs and renames);
//! local writes are too (temp file in the destination folder, fsync, rename), so a failed
//! transfer never leaves a partial file at its destination.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use smolvm_protocol::{FileKind, FrameKind, Request, Response, TreeEntry};

use crate::client::Connection;
use crate::error::{Error, Result};
use crate::vm::SmolVm;

/// Size of the chunks files are sent in.
const CHUNK: usize = 1 << 20;
const ACTION: &str = "Cannot transfer files";

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

/// Writes `reader`'s content to a local temp file beside `dest`, then renames it into place.
fn write_local_atomically(
    dest: &Path,
    mode: Option<u32>,
    fill: impl FnOnce(&mut File) -> Result<()>,
) -> Result<()> {
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
        crate::host::random_u64() as u32
    ));
    let result = (|| {
        let mut file =
            File::create(&tmp).map_err(io_error(format!("creating {}", tmp.display())))?;
        fill(&mut file)?;
        if let Some(mode) = mode {
            file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))
                .map_err(io_error(format!("setting the mode of {}", dest.display())))?;
        }
        file.sync_all()
            .map_err(io_error(format!("writing {}", dest.display())))?;
        fs::rename(&tmp, dest).map_err(io_error(format!("renaming into {}", dest.display())))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl SmolVm {
    fn files_conn(&self) -> Result<Arc<Connection>> {
        self.conn(ACTION)
    }

    fn simple(&self, request: &Request) -> Result<Response> {
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

    /// What is at `guest_path` (symlinks not followed); `None` when nothing is.
    pub fn stat(&self, guest_path: &str) -> Result<Option<GuestFileInfo>> {
        guest_absolute(guest_path)?;
        match self.simple(&Request::Stat {
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
        let call = conn.start_request(&Request::WriteFile {
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
                    let _ = call.send(FrameKind::Signal, libc::SIGKILL.to_le_bytes().to_vec());
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
        loop {
            let Some(frame) = call.next(None)? else {
                continue;
            };
            if frame.kind == FrameKind::Response {
                return self.expect_ok(frame.to_response());
            }
        }
    }

    fn expect_ok(
        &self,
        response: std::result::Result<Response, smolvm_protocol::ProtocolError>,
    ) -> Result<()> {
        match response.map_err(|source| Error::Protocol {
            vm_id: self.vm_id().into(),
            source,
        })? {
            Response::Ok => Ok(()),
            other => Err(self.unexpected(other)),
        }
    }

    /// Streams the guest file `guest_path` into `sink`; returns its mode.
    fn receive_file(&self, guest_path: &str, sink: &mut dyn Write) -> Result<u32> {
        guest_absolute(guest_path)?;
        let conn = self.files_conn()?;
        let call = conn.start_request(&Request::ReadFile {
            path: guest_path.into(),
        })?;
        loop {
            let Some(frame) = call.next(None)? else {
                continue;
            };
            match frame.kind {
                FrameKind::Stdout => sink
                    .write_all(&frame.payload)
                    .map_err(io_error(format!("writing {guest_path} locally")))?,
                FrameKind::Response => {
                    return match frame.to_response().map_err(|source| Error::Protocol {
                        vm_id: self.vm_id().into(),
                        source,
                    })? {
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

    /// Reads the whole guest file `guest_path`.
    pub fn read_file(&self, guest_path: &str) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        self.receive_file(guest_path, &mut data)?;
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
    /// trailing `/` appends the file name), keeping its mode and creating missing parent
    /// directories. Returns the local path written.
    pub fn download_file(&self, guest_path: &str, local: &Path) -> Result<PathBuf> {
        guest_absolute(guest_path)?;
        let name = guest_file_name(guest_path).unwrap_or("download");
        let dest = if local.is_dir() || local.as_os_str().to_string_lossy().ends_with('/') {
            local.join(name)
        } else {
            local.to_path_buf()
        };
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .map_err(io_error(format!("creating {}", parent.display())))?;
        }
        let mut mode = 0o644;
        write_local_atomically(&dest, None, |file| {
            let mut writer = io::BufWriter::with_capacity(CHUNK, &mut *file);
            mode = self.receive_file(guest_path, &mut writer)?;
            writer
                .flush()
                .map_err(io_error(format!("writing {}", dest.display())))
        })?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))
            .map_err(io_error(format!("setting the mode of {}", dest.display())))?;
        Ok(dest)
    }

    /// Copies the local directory tree `local` into the guest directory `guest_dir`
    /// (created), keeping modes and symlinks.
    pub fn upload_dir(&self, local: &Path, guest_dir: &str) -> Result<()> {
        guest_absolute(guest_dir)?;
        let meta = fs::symlink_metadata(local)
            .map_err(io_error(format!("reading {}", local.display())))?;
        if !meta.is_dir() {
            return Err(Error::InvalidConfig {
                field: "local path",
                reason: format!("{} is not a directory", local.display()),
            });
        }
        let root = guest_dir.trim_end_matches('/').to_string();
        self.simple(&Request::MakeDir {
            path: if root.is_empty() {
                "/".into()
            } else {
                root.clone()
            },
            mode: meta.permissions().mode() & 0o7777,
        })?;
        let mut pending = vec![PathBuf::new()];
        while let Some(rel) = pending.pop() {
            let dir = local.join(&rel);
            let mut entries: Vec<_> = fs::read_dir(&dir)
                .map_err(io_error(format!("reading {}", dir.display())))?
                .flatten()
                .collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let rel_child = rel.join(entry.file_name());
                let guest = format!("{root}/{}", rel_child.to_string_lossy());
                let meta = fs::symlink_metadata(entry.path())
                    .map_err(io_error(format!("reading {}", entry.path().display())))?;
                let mode = meta.permissions().mode() & 0o7777;
                if meta.file_type().is_symlink() {
                    let target = fs::read_link(entry.path())
                        .map_err(io_error(format!("reading {}", entry.path().display())))?;
                    self.simple(&Request::Symlink {
                        path: guest,
                        target: target.to_string_lossy().into_owned(),
                    })?;
                } else if meta.is_dir() {
                    self.simple(&Request::MakeDir { path: guest, mode })?;
                    pending.push(rel_child);
                } else if meta.is_file() {
                    let mut file = File::open(entry.path())
                        .map_err(io_error(format!("opening {}", entry.path().display())))?;
                    self.send_file(&guest, mode, false, &mut file)?;
                }
            }
        }
        Ok(())
    }

    /// Copies the guest directory tree `guest_dir` into the local directory `local` (created).
    /// Nothing is ever written outside `local`: entries with absolute paths or `..`, and
    /// symlinks pointing outside the tree, are refused before anything is written.
    pub fn download_dir(&self, guest_dir: &str, local: &Path) -> Result<()> {
        guest_absolute(guest_dir)?;
        let entries = match self.simple(&Request::ListTree {
            path: guest_dir.into(),
        })? {
            Response::Tree { entries } => entries,
            other => return Err(self.unexpected(other)),
        };
        for entry in &entries {
            check_tree_entry(entry)?;
        }
        fs::create_dir_all(local).map_err(io_error(format!("creating {}", local.display())))?;
        let root = guest_dir.trim_end_matches('/');
        for entry in &entries {
            let dest = local.join(&entry.path);
            ensure_real_dirs(local, &dest)?;
            match entry.kind {
                FileKind::Dir => {
                    match fs::create_dir(&dest) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dest.is_dir() => {}
                        Err(e) => return Err(Error::io(format!("creating {}", dest.display()), e)),
                    }
                    fs::set_permissions(&dest, fs::Permissions::from_mode(entry.mode))
                        .map_err(io_error(format!("setting the mode of {}", dest.display())))?;
                }
                FileKind::Symlink => {
                    let target = entry.target.clone().unwrap_or_default();
                    let _ = fs::remove_file(&dest);
                    std::os::unix::fs::symlink(&target, &dest)
                        .map_err(io_error(format!("creating {}", dest.display())))?;
                }
                FileKind::File => {
                    let guest = format!("{root}/{}", entry.path);
                    write_local_atomically(&dest, Some(entry.mode), |file| {
                        let mut writer = io::BufWriter::with_capacity(CHUNK, &mut *file);
                        self.receive_file(&guest, &mut writer)?;
                        writer
                            .flush()
                            .map_err(io_error(format!("writing {}", dest.display())))
                    })?;
                }
                FileKind::Other => {}
            }
        }
        Ok(())
    }
}

/// Refuses tree entries that could write outside the destination.
fn check_tree_entry(entry: &TreeEntry) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::InvalidConfig {
            field: "guest tree",
            reason: format!("refusing entry {:?}: {why}", entry.path),
        })
    };
    let path = Path::new(&entry.path);
    if entry.path.is_empty()
        || path.is_absolute()
        || path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return refuse("not a plain relative path");
    }
    if let Some(target) = &entry.target {
        let target = Path::new(target);
        if target.is_absolute() {
            return refuse("symlink to an absolute path");
        }
        // Depth of the link's folder inside the tree, then walk the target lexically.
        let mut depth = path.components().count() as i64 - 1;
        for component in target.components() {
            match component {
                Component::ParentDir => depth -= 1,
                Component::Normal(_) => depth += 1,
                _ => {}
            }
            if depth < 0 {
                return refuse("symlink pointing outside the tree");
            }
        }
    }
    Ok(())
}

/// Checks that every folder between `root` and `dest` is a real directory, not a symlink:
/// a symlink written earlier in the transfer must never redirect a later write.
fn ensure_real_dirs(root: &Path, dest: &Path) -> Result<()> {
    let rel = dest.strip_prefix(root).unwrap_or(dest);
    let mut at = root.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for component in &parents[..parents.len().saturating_sub(1)] {
        at.push(component);
        let meta =
            fs::symlink_metadata(&at).map_err(io_error(format!("checking {}", at.display())))?;
        if !meta.is_dir() {
            return Err(Error::InvalidConfig {
                field: "guest tree",
                reason: format!(
                    "{} is not a real directory; refusing to write through it",
                    at.display()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, target: Option<&str>) -> TreeEntry {
        TreeEntry {
            path: path.into(),
            kind: if target.is_some() {
                FileKind::Symlink
            } else {
                FileKind::File
            },
            mode: 0o644,
            size: 0,
            target: target.map(Into::into),
        }
    }

    #[test]
    fn tree_entries_that_escape_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/../../x", "", "./x/../.."] {
            assert!(check_tree_entry(&entry(bad, None)).is_err(), "{bad:?}");
        }
        assert!(check_tree_entry(&entry("a/b.txt", None)).is_ok());
        assert!(check_tree_entry(&entry("a/link", Some("../b.txt"))).is_ok());
        assert!(check_tree_entry(&entry("a/link", Some("../../etc"))).is_err());
        assert!(check_tree_entry(&entry("link", Some("/etc/passwd"))).is_err());
        assert!(check_tree_entry(&entry("link", Some("sub/file"))).is_ok());
    }

    #[test]
    fn guest_paths_must_be_absolute() {
        assert!(guest_absolute("/root/x").is_ok());
        let err = guest_absolute("root/x").unwrap_err().to_string();
        assert!(err.contains("not an absolute guest path"), "{err}");
        assert_eq!(guest_file_name("/a/b.txt"), Some("b.txt"));
        assert_eq!(guest_file_name("/a/dir/"), Some("dir"));
    }
}
