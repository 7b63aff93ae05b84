//! Whole trees: listing a guest tree, downloading it safely, uploading a local one.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use smolvm_protocol::{AgentRequest, ErrorKind, FileKind, FrameKind, Response, TreeEntry};

use super::local::{self, Occupied, Staging};
use super::plan::{self, Limits, Node};
use super::{
    cancel, guest_absolute, io_error, size_hint, space_limit, DownloadOptions, ReceiveLimit, CHUNK,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_ENTRIES, MAX_LISTING_BYTES,
};
use crate::error::{Error, Result, TransferRule};
use crate::vm::SmolVm;

/// Where a tree download goes: `local` made absolute; when something exists there already,
/// the caller's own symlinks, `.` and `..` are resolved first (the caller chose that path;
/// nothing the guest made is ever followed).
fn destination(local: &Path) -> Result<PathBuf> {
    let absolute =
        std::path::absolute(local).map_err(io_error(format!("resolving {}", local.display())))?;
    let dest = if fs::symlink_metadata(&absolute).is_ok() {
        fs::canonicalize(&absolute).map_err(io_error(format!("resolving {}", local.display())))?
    } else {
        absolute
    };
    if dest.file_name().is_none() || dest.parent().is_none() {
        return Err(Error::InvalidConfig {
            field: "local path",
            reason: format!(
                "{} names no folder a download can be put in; name a folder, e.g. ./out",
                local.display()
            ),
        });
    }
    Ok(dest)
}

impl SmolVm {
    fn tree_refused(&self, guest_dir: &str, rule: TransferRule, reason: String) -> Error {
        let hint = match rule {
            TransferRule::DestinationNotEmpty => {
                "choose another folder, or pass overwrite to replace its content".into()
            }
            TransferRule::UnsafeTree => {
                "nothing was written; the guest's tree cannot be copied safely as it is".into()
            }
            TransferRule::TooLarge if reason.contains("entries") => {
                "raise max_entries, or download a smaller part of the tree".into()
            }
            other => size_hint(other),
        };
        self.refused(guest_dir, rule, reason, hint)
    }

    /// Lists the guest tree `guest_dir` (symlinks not followed, parents before children)
    /// with the default caps: [`DEFAULT_MAX_ENTRIES`] entries, [`MAX_LISTING_BYTES`] of
    /// listing, [`DEFAULT_IDLE_TIMEOUT`] between chunks. The agent streams the listing in
    /// chunks, so trees of any size arrive (or are refused) instead of hanging.
    pub fn list_tree(&self, guest_dir: &str) -> Result<Vec<TreeEntry>> {
        self.list_tree_with(guest_dir, DEFAULT_MAX_ENTRIES, DEFAULT_IDLE_TIMEOUT, None)
    }

    fn list_tree_with(
        &self,
        guest_dir: &str,
        max_entries: usize,
        idle: Duration,
        deadline: Option<Instant>,
    ) -> Result<Vec<TreeEntry>> {
        guest_absolute(guest_dir)?;
        let call = self.files_conn()?.start_request(&AgentRequest::ListTree {
            path: guest_dir.into(),
        })?;
        let mut entries: Vec<TreeEntry> = Vec::new();
        let mut bytes = 0u64;
        let too_many = |entries: &[TreeEntry]| entries.len() > max_entries;
        let over_entries = |this: &Self| {
            this.tree_refused(
                guest_dir,
                TransferRule::TooLarge,
                format!("the tree has more than {max_entries} entries"),
            )
        };
        loop {
            let frame = self.next_download_frame(&call, guest_dir, idle, deadline)?;
            match frame.kind {
                FrameKind::Stdout => {
                    bytes += frame.payload.len() as u64;
                    if bytes > MAX_LISTING_BYTES {
                        cancel(&call);
                        return Err(self.tree_refused(
                            guest_dir,
                            TransferRule::TooLarge,
                            format!("its listing is over {MAX_LISTING_BYTES} bytes"),
                        ));
                    }
                    let chunk: Vec<TreeEntry> = serde_json::from_slice(&frame.payload)
                        .map_err(|e| self.protocol_error(e.into()))?;
                    entries.extend(chunk);
                    if too_many(&entries) {
                        cancel(&call);
                        return Err(over_entries(self));
                    }
                }
                FrameKind::Response => {
                    match frame
                        .to_response()
                        .map_err(|source| self.protocol_error(source))?
                    {
                        // An older agent sends the whole listing here; this one, the rest
                        // (nothing) after its chunks.
                        Response::Tree { entries: rest } => entries.extend(rest),
                        other => return Err(self.unexpected(other)),
                    }
                    if too_many(&entries) {
                        return Err(over_entries(self));
                    }
                    return Ok(entries);
                }
                _ => {}
            }
        }
    }

    /// Copies the guest directory tree `guest_dir` to the local directory `local` with the
    /// default [`DownloadOptions`]; see [`SmolVm::download_dir_with`].
    pub fn download_dir(&self, guest_dir: &str, local: &Path) -> Result<()> {
        self.download_dir_with(guest_dir, local, &DownloadOptions::default())
            .map(|_| ())
    }

    /// Copies the guest directory tree `guest_dir` to `local`, which ends up holding exactly
    /// that tree (nested folders, empty folders, files, symlinks, modes); returns the local
    /// path written (`local` absolute, the caller's own symlinks resolved).
    ///
    /// Nothing outside `local` is ever created, followed or changed, whatever the guest
    /// lists: the whole listing is checked first ([`plan::plan`]: plain relative paths, no
    /// duplicates, parents listed as directories, symlink targets resolved against the
    /// listing and refused if they leave the tree at any step), then built in a fresh hidden
    /// folder beside `local` through descriptors that never follow a link (symlinks are
    /// made last, folder modes applied after their content), then renamed into place. Modes
    /// lose setuid, setgid and sticky bits unless `keep_special_bits`. A `local` that exists
    /// and is not empty is refused before anything is fetched unless `overwrite`, which
    /// replaces it (old content swapped out atomically, then deleted; never merged). Sizes
    /// are capped (`max_bytes`, the free space less 16 MiB, each file's announced size),
    /// as are entries (`max_entries`) and time (`idle_timeout`, `timeout`). On any failure
    /// nothing is left at `local` or beside it.
    pub fn download_dir_with(
        &self,
        guest_dir: &str,
        local: &Path,
        options: &DownloadOptions,
    ) -> Result<PathBuf> {
        guest_absolute(guest_dir)?;
        let dest = destination(local)?;
        let taken = |this: &Self| {
            this.tree_refused(
                guest_dir,
                TransferRule::DestinationNotEmpty,
                format!("{} exists and is not empty", dest.display()),
            )
        };
        // Fail fast, before fetching anything; the final rename checks again.
        let occupied =
            local::occupied(&dest).map_err(io_error(format!("looking at {}", dest.display())))?;
        if occupied == Occupied::Taken && !options.overwrite {
            return Err(taken(self));
        }
        let deadline = options.timeout.map(|t| Instant::now() + t);
        let root_mode = match self.stat(guest_dir)? {
            Some(info) if info.kind == FileKind::Dir => info.mode,
            // The same errors the agent gives for a path that is missing or not a folder.
            other => {
                let (kind, what) = match other {
                    Some(_) => (ErrorKind::InvalidRequest, "is not a directory"),
                    None => (ErrorKind::NotFound, "No such file or directory"),
                };
                return Err(Error::Guest {
                    vm_id: self.vm_id().into(),
                    kind,
                    message: format!("{guest_dir}: {what}"),
                });
            }
        };
        let entries = self.list_tree_with(
            guest_dir,
            options.max_entries,
            options.idle_timeout,
            deadline,
        )?;
        let plan = plan::plan(
            &entries,
            &Limits {
                max_entries: options.max_entries,
                max_bytes: u64::MAX,
                keep_special_bits: options.keep_special_bits,
            },
        )
        .map_err(|refusal| {
            let reason = if refusal.entry.is_empty() {
                refusal.reason
            } else {
                format!("refusing entry {:?}: {}", refusal.entry, refusal.reason)
            };
            self.tree_refused(guest_dir, refusal.rule, reason)
        })?;
        drop(entries);
        let parent = dest.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(parent).map_err(io_error(format!("creating {}", parent.display())))?;
        let (space, rule, why) = space_limit(parent, options.max_bytes)?;
        if plan.total_bytes > space {
            return Err(self.tree_refused(
                guest_dir,
                rule,
                format!(
                    "its files add up to {} bytes, over the limit of {space} bytes ({why})",
                    plan.total_bytes
                ),
            ));
        }
        let mut staging = Staging::create(&dest).map_err(io_error(format!(
            "creating a folder beside {}",
            dest.display()
        )))?;
        let root = guest_dir.trim_end_matches('/');
        let built = (|| -> Result<()> {
            let at = |path: &str| format!("{} in the download of {guest_dir}", path);
            for dir in &plan.dirs {
                staging
                    .mkdir(&dir.path)
                    .map_err(io_error(format!("creating {}", at(&dir.path))))?;
            }
            for file in &plan.files {
                let mut out = staging
                    .create_file(&file.path)
                    .map_err(io_error(format!("creating {}", at(&file.path))))?;
                let limit = ReceiveLimit {
                    max_bytes: file.size,
                    rule: TransferRule::TooLarge,
                    why: "the size the guest's listing announced".into(),
                    idle: options.idle_timeout,
                    deadline,
                };
                let mut writer = io::BufWriter::with_capacity(CHUNK, &mut out);
                self.receive_file(&format!("{root}/{}", file.path), &mut writer, &limit)?;
                writer
                    .flush()
                    .map_err(io_error(format!("writing {}", at(&file.path))))?;
                drop(writer);
                local::fchmod(&out, file.mode)
                    .map_err(io_error(format!("setting the mode of {}", at(&file.path))))?;
                out.sync_all()
                    .map_err(io_error(format!("writing {}", at(&file.path))))?;
            }
            for link in &plan.symlinks {
                staging
                    .symlink(&link.path, &link.target)
                    .map_err(io_error(format!("creating {}", at(&link.path))))?;
            }
            // Deepest first, so that a read-only folder never blocks its own content.
            for dir in plan.dirs.iter().rev() {
                staging
                    .set_dir_mode(&dir.path, dir.mode)
                    .map_err(io_error(format!("setting the mode of {}", at(&dir.path))))?;
            }
            staging
                .set_dir_mode("", plan::local_mode(root_mode, options.keep_special_bits))
                .and_then(|()| staging.sync())
                .map_err(io_error(format!("finishing {}", dest.display())))
        })();
        built?;
        local::install(staging, &dest, options.overwrite).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOTEMPTY | libc::EEXIST | libc::ENOTDIR | libc::EISDIR) => taken(self),
            _ => Error::io(format!("renaming the download into {}", dest.display()), e),
        })?;
        Ok(dest)
    }

    /// Copies the local directory tree `local` into the guest directory `guest_dir`
    /// (created), keeping modes and symlinks. Symlinks are copied as symlinks, and only
    /// when their target, resolved against `local` (following the tree's own symlinks),
    /// stays inside it at every step: a link that is absolute or leads out of the tree is
    /// refused, naming it, before anything is sent, so an upload never carries or points at
    /// host files outside `local`.
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
        let items = walk_local(local)?;
        let root = guest_dir.trim_end_matches('/').to_string();
        self.simple(&AgentRequest::MakeDir {
            path: if root.is_empty() {
                "/".into()
            } else {
                root.clone()
            },
            mode: local::mode_of(&meta),
        })?;
        for item in items {
            let guest = format!("{root}/{}", item.rel);
            match item.kind {
                LocalKind::Symlink(target) => {
                    self.simple(&AgentRequest::Symlink {
                        path: guest,
                        target,
                    })?;
                }
                LocalKind::Dir => {
                    self.simple(&AgentRequest::MakeDir {
                        path: guest,
                        mode: item.mode,
                    })?;
                }
                LocalKind::File => {
                    let path = local.join(&item.rel);
                    // O_NOFOLLOW: the walk saw a file here; never read through a link that
                    // replaced it since.
                    let mut file = OpenOptions::new()
                        .read(true)
                        .custom_flags(libc::O_NOFOLLOW)
                        .open(&path)
                        .map_err(io_error(format!("opening {}", path.display())))?;
                    self.send_file(&guest, item.mode, false, &mut file)?;
                }
            }
        }
        Ok(())
    }
}

enum LocalKind {
    Dir,
    File,
    Symlink(String),
}

struct LocalItem {
    rel: String,
    kind: LocalKind,
    mode: u32,
}

/// Walks `root` (parents before children, names sorted), checking every symlink; other
/// kinds of files (sockets, fifos, devices) are skipped.
fn walk_local(root: &Path) -> Result<Vec<LocalItem>> {
    let mut items = Vec::new();
    let mut pending = vec![String::new()];
    let mut budget = u64::MAX;
    while let Some(rel) = pending.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .map_err(io_error(format!("reading {}", dir.display())))?
            .flatten()
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel_child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = fs::symlink_metadata(entry.path())
                .map_err(io_error(format!("reading {}", entry.path().display())))?;
            let mode = local::mode_of(&meta);
            let kind = if meta.file_type().is_symlink() {
                let target = fs::read_link(entry.path())
                    .map_err(io_error(format!("reading {}", entry.path().display())))?
                    .to_string_lossy()
                    .into_owned();
                plan::check_link(&rel, &target, &mut budget, |p| lookup_local(root, p)).map_err(
                    |why| Error::Transfer {
                        what: format!("upload of {}", root.display()),
                        rule: TransferRule::UnsafeUpload,
                        reason: format!("{} is {why}", entry.path().display()),
                        hint: "upload_dir copies only symlinks that stay inside the folder; \
                               remove the link or copy what it points to into the folder"
                            .into(),
                    },
                )?;
                LocalKind::Symlink(target)
            } else if meta.is_dir() {
                pending.push(rel_child.clone());
                LocalKind::Dir
            } else if meta.is_file() {
                LocalKind::File
            } else {
                continue;
            };
            items.push(LocalItem {
                rel: rel_child,
                kind,
                mode,
            });
        }
    }
    Ok(items)
}

/// What `rel` is under the local `root`, for [`plan::check_link`].
fn lookup_local(root: &Path, rel: &str) -> Node {
    let path = root.join(rel);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_symlink() => Node::Symlink(
            fs::read_link(&path)
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
        Ok(meta) if meta.is_dir() => Node::Dir,
        Ok(_) => Node::Other,
        Err(_) => Node::Missing,
    }
}
