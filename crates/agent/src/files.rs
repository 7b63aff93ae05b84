//! File transfer requests: atomic writes streamed from the host, streamed reads, and the
//! small operations tree transfers are built from.

// The error of each step is the request's final answer, built once per request: boxing it
// would only add an allocation.
#![allow(clippy::result_large_err)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use smolvm_protocol::{AgentRequest, ErrorKind, FileKind, Frame, FrameKind, Response, TreeEntry};

use crate::flow::OutputWindow;
use crate::shared::Shared;

/// Size of the chunks a file is read in (one frame each).
const CHUNK: usize = 1 << 20;

fn io_error(path: &Path, e: &io::Error) -> Response {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Io,
    };
    Response::error(kind, format!("{}: {e}", path.display()))
}

/// Guest paths must be absolute: there is no meaningful working directory for a transfer.
fn absolute(path: &str) -> Result<PathBuf, Response> {
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(Response::error(
            ErrorKind::InvalidRequest,
            format!("guest path {path:?} is not absolute"),
        ))
    }
}

/// Receives a file's content and puts it in place atomically: a temp file next to the target,
/// fsync, rename, fsync of the directory. Nothing is left at the target unless every byte
/// arrived and was written.
pub fn write_file(
    shared: &Arc<Shared>,
    id: u64,
    path: &str,
    mode: u32,
    parents: bool,
    content: Receiver<Vec<u8>>,
) {
    let response = match absolute(path) {
        Ok(path) => match receive_into(&path, id, mode, parents, &content, |n| {
            shared.credit_input(id, n)
        }) {
            Ok(()) => Response::Ok,
            Err(response) => response,
        },
        Err(response) => response,
    };
    shared.close_stream(id);
    shared.respond(id, &response);
}

fn receive_into(
    path: &Path,
    id: u64,
    mode: u32,
    parents: bool,
    content: &Receiver<Vec<u8>>,
    consumed: impl Fn(usize),
) -> Result<(), Response> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Response::error(
            ErrorKind::InvalidRequest,
            format!("{} names no file", path.display()),
        ));
    };
    if parents {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, &e))?;
    } else if !dir.is_dir() {
        return Err(Response::error(
            ErrorKind::NotFound,
            format!(
                "{}: parent directory does not exist (allow creating parents)",
                dir.display()
            ),
        ));
    }
    if path.is_dir() {
        return Err(Response::error(
            ErrorKind::InvalidRequest,
            format!("{} is a directory", path.display()),
        ));
    }
    let tmp = dir.join(format!(".{}.smolvm-{id}.tmp", name.to_string_lossy()));
    let result = (|| -> io::Result<bool> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        loop {
            match content.recv() {
                Ok(chunk) if chunk.is_empty() => break,
                Ok(chunk) => {
                    file.write_all(&chunk)?;
                    consumed(chunk.len());
                }
                // The host went away or cancelled the transfer.
                Err(_) => return Ok(false),
            }
        }
        file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()?;
        Ok(true)
    })();
    match result {
        Ok(true) => Ok(()),
        Ok(false) => {
            let _ = fs::remove_file(&tmp);
            Err(Response::error(
                ErrorKind::Io,
                format!("transfer to {} was cancelled", path.display()),
            ))
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(io_error(path, &e))
        }
    }
}

/// Answers the other file requests.
pub fn handle(shared: &Arc<Shared>, id: u64, request: AgentRequest, window: &OutputWindow) {
    let response = match request {
        AgentRequest::ReadFile { path } => {
            absolute(&path).and_then(|p| read_file(shared, id, &p, window))
        }
        AgentRequest::Stat { path } => absolute(&path).map(|p| stat(&p)),
        AgentRequest::MakeDir { path, mode } => absolute(&path).and_then(|p| make_dir(&p, mode)),
        AgentRequest::Symlink { path, target } => absolute(&path).and_then(|p| {
            std::os::unix::fs::symlink(&target, &p)
                .map(|()| Response::Ok)
                .map_err(|e| io_error(&p, &e))
        }),
        AgentRequest::ListTree { path } => {
            absolute(&path).and_then(|p| list_tree(shared, id, &p, window))
        }
        other => Err(Response::error(
            ErrorKind::InvalidRequest,
            format!("not a file request: {}", other.log_summary()),
        )),
    };
    shared.close_stream(id);
    shared.respond(id, &response.unwrap_or_else(|e| e));
}

/// The answer to a request the host cancelled while it was being streamed.
fn cancelled(path: &Path) -> Response {
    Response::error(
        ErrorKind::Io,
        format!("reading {} was cancelled", path.display()),
    )
}

fn kind_of(meta: &fs::Metadata) -> FileKind {
    let t = meta.file_type();
    if t.is_symlink() {
        FileKind::Symlink
    } else if t.is_dir() {
        FileKind::Dir
    } else if t.is_file() {
        FileKind::File
    } else {
        FileKind::Other
    }
}

fn stat(path: &Path) -> Response {
    match fs::symlink_metadata(path) {
        Ok(meta) => Response::FileInfo {
            kind: Some(kind_of(&meta)),
            mode: meta.permissions().mode() & 0o7777,
            size: meta.len(),
        },
        Err(_) => Response::FileInfo {
            kind: None,
            mode: 0,
            size: 0,
        },
    }
}

fn read_file(
    shared: &Shared,
    id: u64,
    path: &Path,
    window: &OutputWindow,
) -> Result<Response, Response> {
    let mut file = File::open(path).map_err(|e| io_error(path, &e))?;
    let meta = file.metadata().map_err(|e| io_error(path, &e))?;
    if !meta.is_file() {
        return Err(Response::error(
            ErrorKind::InvalidRequest,
            format!("{} is not a regular file", path.display()),
        ));
    }
    // Announce the size first, so that the host can refuse what it cannot hold (a sparse
    // 1 TiB file) before any content is sent.
    let announce = Response::FileInfo {
        kind: Some(FileKind::File),
        mode: meta.permissions().mode() & 0o7777,
        size: meta.len(),
    };
    if let Ok(json) = serde_json::to_vec(&announce) {
        if !window.take_exact(json.len()) {
            return Err(cancelled(path));
        }
        shared.send(&Frame::data(id, FrameKind::Stderr, json));
    }
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        // As much as the host has room for (waiting for it if need be); nothing once the
        // host cancelled the request.
        let allowed = window.take(CHUNK);
        if allowed == 0 || !shared.is_open(id) {
            return Err(cancelled(path));
        }
        let n = match file.read(&mut buf[..allowed]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(path, &e)),
        };
        size += n as u64;
        shared.send(&Frame::data(id, FrameKind::Stdout, buf[..n].to_vec()));
    }
    Ok(Response::FileInfo {
        kind: Some(FileKind::File),
        mode: meta.permissions().mode() & 0o7777,
        size,
    })
}

fn make_dir(path: &Path, mode: u32) -> Result<Response, Response> {
    fs::create_dir_all(path).map_err(|e| io_error(path, &e))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(|e| io_error(path, &e))?;
    Ok(Response::Ok)
}

/// Bytes of JSON after which a listing chunk is sent: far below the frame limit, and small
/// enough that the host sees progress (and can cancel) while a huge tree is walked.
const LIST_CHUNK: usize = 256 << 10;

/// Walks the tree under `root` (symlinks not followed, parents before children) and streams
/// its entries as `Stdout` frames, each a JSON array of [`TreeEntry`], then answers with an
/// empty [`Response::Tree`]. No frame ever nears the frame limit, whatever the tree's size;
/// the walk stops when the host cancels it.
fn list_tree(
    shared: &Shared,
    id: u64,
    root: &Path,
    window: &OutputWindow,
) -> Result<Response, Response> {
    let meta = fs::symlink_metadata(root).map_err(|e| io_error(root, &e))?;
    if !meta.is_dir() {
        return Err(Response::error(
            ErrorKind::InvalidRequest,
            format!("{} is not a directory", root.display()),
        ));
    }
    let mut chunk = Vec::with_capacity(LIST_CHUNK + 8192);
    // Each chunk waits for room in the request's output window.
    let flush = |chunk: &mut Vec<u8>| -> Result<(), Response> {
        if !chunk.is_empty() {
            chunk.push(b']');
            if !window.take_exact(chunk.len()) {
                return Err(cancelled(root));
            }
            shared.send(&Frame::data(id, FrameKind::Stdout, std::mem::take(chunk)));
        }
        Ok(())
    };
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        if !shared.is_open(id) {
            return Err(cancelled(root));
        }
        let dir = root.join(&rel);
        let mut children: Vec<_> = fs::read_dir(&dir)
            .map_err(|e| io_error(&dir, &e))?
            .flatten()
            .collect();
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let rel_child = rel.join(child.file_name());
            let meta =
                fs::symlink_metadata(child.path()).map_err(|e| io_error(&child.path(), &e))?;
            let kind = kind_of(&meta);
            let target = (kind == FileKind::Symlink)
                .then(|| {
                    fs::read_link(child.path())
                        .ok()
                        .map(|t| t.to_string_lossy().into_owned())
                })
                .flatten();
            let entry = TreeEntry {
                path: rel_child.to_string_lossy().into_owned(),
                kind,
                mode: meta.permissions().mode() & 0o7777,
                size: meta.len(),
                target,
            };
            // One entry is at most a few KiB (paths are under PATH_MAX): a chunk stays far
            // below the frame limit.
            let json = serde_json::to_vec(&entry).map_err(|e| {
                Response::error(ErrorKind::Internal, format!("encoding the listing: {e}"))
            })?;
            chunk.push(if chunk.is_empty() { b'[' } else { b',' });
            chunk.extend_from_slice(&json);
            if chunk.len() >= LIST_CHUNK {
                flush(&mut chunk)?;
                // Checked per chunk too: one folder may hold millions of entries.
                if !shared.is_open(id) {
                    return Err(cancelled(root));
                }
            }
            if kind == FileKind::Dir {
                pending.push(rel_child);
            }
        }
    }
    flush(&mut chunk)?;
    Ok(Response::Tree {
        entries: Vec::new(),
    })
}
