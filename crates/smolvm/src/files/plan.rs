//! Checking a guest's tree listing before anything is written, as pure functions.
//!
//! The guest is hostile: its agent may be replaced and its listing may contain anything.
//! [`plan`] validates the whole listing and returns the ordered operations that rebuild it
//! under a fresh directory; any entry that could create, follow or change something outside
//! that directory makes it refuse the whole download, naming the entry.

use std::collections::{HashMap, VecDeque};

use smolvm_protocol::{FileKind, TreeEntry};

use crate::error::TransferRule;

/// Most symlinks followed while resolving one link's target (Linux's own limit).
pub const MAX_SYMLINK_HOPS: usize = 40;
/// Longest symlink target accepted (Linux's `PATH_MAX` less the terminating NUL).
const MAX_TARGET_LEN: usize = 4095;
/// Longest name of one path component (Linux's `NAME_MAX`).
const MAX_NAME_LEN: usize = 255;
/// Total path components walked while resolving every symlink of one listing: without a
/// budget, a million links each chaining 40 hops of 4 KiB targets would pin a host core.
const RESOLVE_BUDGET: u64 = 1 << 26;
/// Permission bits a download keeps unless special bits are asked for.
const PLAIN_BITS: u32 = 0o777;

/// The caps a listing is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most entries accepted.
    pub max_entries: usize,
    /// Most bytes of file content accepted (the sum of the announced sizes).
    pub max_bytes: u64,
    /// Keep setuid, setgid and sticky bits instead of dropping them.
    pub keep_special_bits: bool,
}

/// A directory to create, then give `mode` once its content is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedDir {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Permission bits to apply last.
    pub mode: u32,
}

/// A regular file to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Announced size: the guest may not send more.
    pub size: u64,
}

/// A symlink to create once everything else exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLink {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Its target, checked to stay inside the tree.
    pub target: String,
}

/// The operations that rebuild a checked listing, in a safe order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Directories, parents before children.
    pub dirs: Vec<PlannedDir>,
    /// Regular files.
    pub files: Vec<PlannedFile>,
    /// Symlinks, created last so that no write can pass through one.
    pub symlinks: Vec<PlannedLink>,
    /// Entries that are neither files, directories nor symlinks (devices, sockets, fifos):
    /// not recreated.
    pub skipped: usize,
    /// Sum of the files' announced sizes.
    pub total_bytes: u64,
}

/// Why a listing was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule broken: [`TransferRule::UnsafeTree`] or [`TransferRule::TooLarge`].
    pub rule: TransferRule,
    /// The entry at fault (empty when the whole listing is).
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Refusal {
    fn unsafe_entry(entry: &str, reason: impl Into<String>) -> Self {
        Self {
            rule: TransferRule::UnsafeTree,
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}

/// Splits a listing path into its components, refusing anything but a plain relative path:
/// no leading `/`, no empty, `.` or `..` component, no NUL, no over-long name.
pub fn components(path: &str) -> Result<Vec<&str>, String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.starts_with('/') {
        return Err("absolute path".into());
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        match *part {
            "" | "." | ".." => return Err("not a plain relative path".into()),
            p if p.contains('\0') => return Err("NUL in the path".into()),
            p if p.len() > MAX_NAME_LEN => return Err("a name longer than 255 bytes".into()),
            _ => {}
        }
    }
    Ok(parts)
}

/// The permission bits a download gives an entry the guest listed with `mode`.
pub fn local_mode(mode: u32, keep_special_bits: bool) -> u32 {
    if keep_special_bits {
        mode & 0o7777
    } else {
        mode & PLAIN_BITS
    }
}

/// Validates `entries` (a guest's listing of one directory) and returns the operations that
/// rebuild it. Refused, naming the entry: more than `max_entries` entries or more than
/// `max_bytes` of content; a path that is not plain and relative; a path listed twice; an
/// entry whose parent is not listed as a directory; a symlink without a target or a
/// non-symlink with one; a symlink whose target, resolved against the listing itself
/// (following the listing's symlinks, at most [`MAX_SYMLINK_HOPS`]), is absolute or leaves
/// the tree at any step.
pub fn plan(entries: &[TreeEntry], limits: &Limits) -> Result<Plan, Refusal> {
    if entries.len() > limits.max_entries {
        return Err(Refusal {
            rule: TransferRule::TooLarge,
            entry: String::new(),
            reason: format!(
                "the tree has more than {} entries ({})",
                limits.max_entries,
                entries.len()
            ),
        });
    }
    let mut by_path: HashMap<&str, &TreeEntry> = HashMap::with_capacity(entries.len());
    let mut depths = Vec::with_capacity(entries.len());
    for entry in entries {
        let parts =
            components(&entry.path).map_err(|why| Refusal::unsafe_entry(&entry.path, why))?;
        if by_path.insert(&entry.path, entry).is_some() {
            return Err(Refusal::unsafe_entry(&entry.path, "listed twice"));
        }
        match (entry.kind, &entry.target) {
            (FileKind::Symlink, None) => {
                return Err(Refusal::unsafe_entry(
                    &entry.path,
                    "a symlink without a target",
                ))
            }
            (FileKind::Symlink, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(Refusal::unsafe_entry(
                    &entry.path,
                    "a target on something that is not a symlink",
                ))
            }
        }
        depths.push(parts.len());
    }
    let mut out = Plan::default();
    for entry in entries {
        if let Some((parent, _)) = entry.path.rsplit_once('/') {
            if !by_path.get(parent).is_some_and(|p| p.kind == FileKind::Dir) {
                return Err(Refusal::unsafe_entry(
                    &entry.path,
                    format!("its parent {parent:?} is not a directory of the listing"),
                ));
            }
        }
    }
    let mut budget = RESOLVE_BUDGET;
    for entry in entries {
        let mode = local_mode(entry.mode, limits.keep_special_bits);
        match entry.kind {
            FileKind::Dir => out.dirs.push(PlannedDir {
                path: entry.path.clone(),
                mode,
            }),
            FileKind::File => {
                out.total_bytes = out.total_bytes.saturating_add(entry.size);
                out.files.push(PlannedFile {
                    path: entry.path.clone(),
                    mode,
                    size: entry.size,
                });
            }
            FileKind::Symlink => {
                let target = entry.target.clone().unwrap_or_default();
                let parent = entry.path.rsplit_once('/').map_or("", |(p, _)| p);
                check_link(parent, &target, &mut budget, |path| {
                    by_path.get(path).map_or(Node::Missing, |e| match e.kind {
                        FileKind::Dir => Node::Dir,
                        FileKind::Symlink => Node::Symlink(e.target.clone().unwrap_or_default()),
                        FileKind::File | FileKind::Other => Node::Other,
                    })
                })
                .map_err(|why| Refusal::unsafe_entry(&entry.path, why))?;
                out.symlinks.push(PlannedLink {
                    path: entry.path.clone(),
                    target,
                });
            }
            FileKind::Other => out.skipped += 1,
        }
    }
    if out.total_bytes > limits.max_bytes {
        return Err(Refusal {
            rule: TransferRule::TooLarge,
            entry: String::new(),
            reason: format!(
                "the tree's files add up to {} bytes, over the cap of {} bytes",
                out.total_bytes, limits.max_bytes
            ),
        });
    }
    // Parents before children whatever order the guest listed them in: every parent is a
    // listed directory, so creating by depth always finds it.
    let depth = |p: &str| p.bytes().filter(|&b| b == b'/').count();
    out.dirs.sort_by_key(|d| depth(&d.path));
    Ok(out)
}

/// What a path inside a tree is, for [`check_link`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory: resolution goes on inside it.
    Dir,
    /// A symlink with this target: resolution follows it.
    Symlink(String),
    /// A file or anything else that exists.
    Other,
    /// Nothing.
    Missing,
}

/// Checks that the symlink target `target`, written in the directory `parent` (relative to
/// the tree's root, `""` for the root), stays inside the tree at every step, physically and
/// lexically: symlinks met on the way (as `lookup` reports them) are followed, at most
/// [`MAX_SYMLINK_HOPS`]; a `..` above the root, an absolute target, an empty or over-long
/// target, or a chain too long refuses. Components under a missing path are still walked
/// lexically, so that a link cannot become an escape once the missing part is created.
pub fn check_link(
    parent: &str,
    target: &str,
    budget: &mut u64,
    mut lookup: impl FnMut(&str) -> Node,
) -> Result<(), String> {
    fn check_target(target: &str) -> Result<(), String> {
        if target.is_empty() {
            Err("a symlink with an empty target".into())
        } else if target.starts_with('/') {
            Err(format!("a symlink to the absolute path {target:?}"))
        } else if target.len() > MAX_TARGET_LEN || target.contains('\0') {
            Err("a symlink target longer than 4095 bytes or holding a NUL".into())
        } else {
            Ok(())
        }
    }
    check_target(target)?;
    let mut at: Vec<String> = if parent.is_empty() {
        Vec::new()
    } else {
        parent.split('/').map(str::to_string).collect()
    };
    let mut queue: VecDeque<String> = target.split('/').map(str::to_string).collect();
    let mut hops = 0;
    while let Some(part) = queue.pop_front() {
        *budget = budget
            .checked_sub(1)
            .ok_or("its symlinks are too many or too long to check")?;
        match part.as_str() {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return Err(format!(
                        "a symlink to {target:?}, which leads outside the tree"
                    ));
                }
            }
            name => {
                at.push(name.to_string());
                if let Node::Symlink(next) = lookup(&at.join("/")) {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(format!(
                            "a symlink to {target:?}, a chain of more than {MAX_SYMLINK_HOPS} \
                             symlinks (or a loop)"
                        ));
                    }
                    check_target(&next).map_err(|why| {
                        format!("a symlink to {target:?}, through {}: {why}", at.join("/"))
                    })?;
                    at.pop();
                    for part in next.split('/').rev() {
                        queue.push_front(part.to_string());
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
