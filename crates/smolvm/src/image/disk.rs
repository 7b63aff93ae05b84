//! Disk images: recognising a user's root filesystem, checking that it carries our agent, and
//! giving every VM a qcow2 overlay of its own over a read-only base.
//!
//! The base is never opened for writing: a VM writes only to its overlay (`qemu-img create -f
//! qcow2 -b base -F raw`), which lives in the VM's directory and goes away with it. Booting a
//! shared base read-write would also be unsafe for the base itself: an unclean shutdown leaves
//! its journal dirty, and a later read-only mount of it panics the guest.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

use smolvm_protocol::AGENT_PORT_NAME;

use crate::error::{Error, Result};
use crate::image::{is_static_elf, RootFs};
use crate::paths::VmPaths;
use smolvm_vmm::qemu::find_in_path;

/// Offset of the ext2/3/4 superblock magic (superblock at 1024, magic at +56).
const EXT_MAGIC_OFFSET: usize = 1080;
/// Largest `/init` read back from a custom root filesystem to check that it is the agent.
const MAX_INIT_BYTES: u64 = 256 << 20;
/// How to get the disk tools.
const E2FSPROGS_HINT: &str =
    "install it with `apt-get install e2fsprogs` (or run `smolvm setup` as root)";

/// What the first bytes of a root filesystem file say it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Cpio,
    CompressedCpio,
    Ext,
    Qcow2,
    Unknown,
}

fn sniff(head: &[u8]) -> Format {
    if head.starts_with(b"070701") || head.starts_with(b"070702") {
        Format::Cpio
    } else if head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
        // gzip and lz4 (legacy frame): the two compressions our kernel unpacks.
        Format::CompressedCpio
    } else if head.get(EXT_MAGIC_OFFSET..EXT_MAGIC_OFFSET + 2) == Some(&[0x53, 0xef]) {
        Format::Ext
    } else if head.starts_with(b"QFI\xfb") {
        Format::Qcow2
    } else {
        Format::Unknown
    }
}

fn invalid(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::InvalidConfig {
        field: "rootfs_path",
        reason: format!("{}: {reason}", path.display()),
    }
}

/// Why an `/init` is not the agent, or `None` when it is: a static executable that speaks our
/// protocol (it names the guest channel's port).
fn agent_problem(init: &[u8]) -> Option<&'static str> {
    if !is_static_elf(init) {
        return Some("is not a static executable");
    }
    let needle = AGENT_PORT_NAME.as_bytes();
    if !init.windows(needle.len()).any(|w| w == needle) {
        return Some("is not the SmolVM agent");
    }
    None
}

const AGENT_HINT: &str = "the SmolVM agent must be the file /init (copy the static smolvm-agent \
                          built by scripts/build-agent.sh there, mode 0755), or build an image \
                          with `smolvm image build debian`";

/// Recognises a user-supplied root filesystem (`VmConfig::rootfs_path`) and checks that it
/// boots our agent: an initramfs (newc cpio, or gzip/lz4-compressed, which cannot be checked
/// without unpacking) or an ext2/3/4 image. Anything else, or an image whose `/init` is not
/// the agent, is refused here rather than hanging at boot.
pub fn inspect_custom_rootfs(path: &Path) -> Result<RootFs> {
    let mut head = Vec::with_capacity(4096);
    File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut head))
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    match sniff(&head) {
        Format::Cpio => {
            match cpio_init(path)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
            {
                Some(init) => match agent_problem(&init) {
                    None => Ok(RootFs::Initramfs(path.to_path_buf())),
                    Some(problem) => {
                        Err(invalid(path, format!("its /init {problem}; {AGENT_HINT}")))
                    }
                },
                None => Err(invalid(
                    path,
                    format!("this initramfs has no /init regular file; {AGENT_HINT}"),
                )),
            }
        }
        Format::CompressedCpio => Ok(RootFs::Initramfs(path.to_path_buf())),
        Format::Ext => {
            let init = ext_read_file(path, "/init")?;
            match init.map(|bytes| agent_problem(&bytes)) {
                Some(None) => Ok(RootFs::Disk(path.to_path_buf())),
                Some(Some(problem)) => {
                    Err(invalid(path, format!("its /init {problem}; {AGENT_HINT}")))
                }
                None => Err(invalid(
                    path,
                    format!("this ext4 image has no /init regular file; {AGENT_HINT}"),
                )),
            }
        }
        Format::Qcow2 => Err(invalid(
            path,
            "qcow2 images are not accepted as a root filesystem; convert it with `qemu-img \
             convert -O raw IMAGE rootfs.ext4` (each VM gets its own qcow2 overlay anyway)",
        )),
        Format::Unknown => Err(invalid(
            path,
            "neither an initramfs (newc cpio, optionally gzip or lz4) nor an ext4 filesystem image",
        )),
    }
}

/// The contents of `init` in an uncompressed newc archive, if it is a regular file there.
fn cpio_init(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut offset: u64 = 0;
    loop {
        let mut header = [0u8; 110];
        if reader.read_exact(&mut header).is_err() {
            return Ok(None);
        }
        if !(header.starts_with(b"070701") || header.starts_with(b"070702")) {
            return Ok(None);
        }
        let field = |i: usize| {
            std::str::from_utf8(&header[6 + i * 8..14 + i * 8])
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .unwrap_or(0)
        };
        let (mode, file_size, name_size) = (field(1), field(6), field(11));
        let mut name = vec![0u8; name_size as usize];
        reader.read_exact(&mut name)?;
        let name_end = offset + 110 + name_size;
        let data_start = name_end.next_multiple_of(4);
        reader.seek_relative((data_start - name_end) as i64)?;
        let name = name.strip_suffix(b"\0").unwrap_or(&name);
        if name == b"TRAILER!!!" {
            return Ok(None);
        }
        let is_regular = mode & 0o170000 == 0o100000;
        if (name == b"init" || name == b"./init") && is_regular && file_size <= MAX_INIT_BYTES {
            let mut data = vec![0u8; file_size as usize];
            reader.read_exact(&mut data)?;
            return Ok(Some(data));
        }
        let data_end = data_start + file_size;
        offset = data_end.next_multiple_of(4);
        reader.seek(SeekFrom::Start(offset))?;
    }
}

/// Finds `debugfs` (e2fsprogs), which reads ext4 images without mounting them.
fn debugfs() -> Result<PathBuf> {
    find_sbin("debugfs").ok_or_else(|| Error::MissingProgram {
        program: "debugfs",
        hint: E2FSPROGS_HINT.into(),
    })
}

/// A program from `PATH`, or from the sbin folders that a non-root `PATH` often lacks.
pub(crate) fn find_sbin(name: &str) -> Option<PathBuf> {
    find_in_path(name).or_else(|| {
        ["/usr/sbin", "/sbin"]
            .iter()
            .map(|d| Path::new(d).join(name))
            .find(|p| p.is_file())
    })
}

/// Runs one debugfs request on `image` (read-only: debugfs opens it read-only without `-w`).
fn debugfs_request(image: &Path, request: &str) -> Result<std::process::Output> {
    Command::new(debugfs()?)
        .arg("-R")
        .arg(request)
        .arg(image)
        .output()
        .map_err(|e| Error::io(format!("running debugfs on {}", image.display()), e))
}

/// Whether `file` is a regular file in the ext4 image at `image`.
pub fn ext_has_regular_file(image: &Path, file: &str) -> Result<bool> {
    let out = debugfs_request(image, &format!("stat {file}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("Type: regular"))
}

/// The contents of `file` in the ext4 image at `image`, if it is a regular file there.
pub fn ext_read_file(image: &Path, file: &str) -> Result<Option<Vec<u8>>> {
    if !ext_has_regular_file(image, file)? {
        return Ok(None);
    }
    let out = debugfs_request(image, &format!("cat {file}"))?;
    Ok(Some(out.stdout))
}

/// Writes a copy of the ext4 image `base` to `dest` with `agent` as its `/init` (mode 0755),
/// without mounting anything: `cp --sparse=always`, then `debugfs -w`. `scratch` holds the
/// agent briefly, under a plain name that debugfs's command parser takes as is. The copy is
/// synced and made read-only, like a freshly built image.
pub fn copy_with_new_init(base: &Path, dest: &Path, agent: &[u8], scratch: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(dest);
    let copied = Command::new("cp")
        .arg("--sparse=always")
        .arg(base)
        .arg(dest)
        .status()
        .map_err(|e| Error::io("running cp", e))?;
    if !copied.success() {
        return Err(Error::io(
            format!("copying {}", base.display()),
            std::io::Error::other(format!("cp exited with {copied}")),
        ));
    }
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io(format!("preparing {}", dest.display()), e))?;
    smolvm_sys::fs::create_dir_private(scratch)
        .map_err(|e| Error::io(format!("creating {}", scratch.display()), e))?;
    let staged = scratch.join(format!("agent-{}.init", std::process::id()));
    smolvm_sys::fs::create_with_mode(&staged, smolvm_sys::fs::PRIVATE_FILE)
        .and_then(|mut file| file.write_all(agent))
        .map_err(|e| Error::io(format!("writing {}", staged.display()), e))?;
    let script = format!(
        "rm /init\nwrite {} /init\nset_inode_field /init mode 0100755\n",
        staged
            .file_name()
            .and_then(|n| n.to_str())
            .expect("ASCII name")
    );
    let run = Command::new(debugfs()?)
        .args(["-w", "-f", "-"])
        .arg(dest)
        .current_dir(scratch)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child
                .stdin
                .take()
                .expect("piped")
                .write_all(script.as_bytes())?;
            child.wait_with_output()
        });
    let _ = std::fs::remove_file(&staged);
    let out = run.map_err(|e| Error::io(format!("running debugfs on {}", dest.display()), e))?;
    // debugfs reports failed requests on stderr but exits 0: check the result instead.
    if !out.status.success() || ext_read_file(dest, "/init")?.as_deref() != Some(agent) {
        return Err(Error::io(
            format!("replacing /init in {}", dest.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    let file = File::open(dest).map_err(|e| Error::io(format!("opening {}", dest.display()), e))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", dest.display()), e))?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| Error::io(format!("protecting {}", dest.display()), e))
}

/// Gives the VM at `paths` its writable disk over `base`, unless it has one already (a
/// persistent sandbox keeps its overlay, and so its files, across stop/start).
///
/// The overlay points at a hard link to the base in the VM's directory, by a relative name:
/// rebuilding or removing the image later replaces the image's file, not the inode this VM
/// reads. Where a hard link is impossible (another filesystem), it points at the base itself.
pub fn create_overlay(paths: &VmPaths, base: &Path) -> Result<()> {
    let overlay = paths.overlay();
    if overlay.is_file() {
        return Ok(());
    }
    let link = paths.base_link();
    let _ = std::fs::remove_file(&link);
    let backing = match std::fs::hard_link(base, &link) {
        Ok(()) => PathBuf::from(link.file_name().expect("base link has a file name")),
        Err(e) => {
            tracing::debug!(
                "cannot hard-link {} ({e}); the overlay uses it directly",
                base.display()
            );
            base.to_path_buf()
        }
    };
    let qemu_img = find_in_path("qemu-img").ok_or_else(|| Error::MissingProgram {
        program: "qemu-img",
        hint: "install it with `apt-get install qemu-utils` (or run `smolvm setup` as root)".into(),
    })?;
    let creating = |e| Error::io(format!("creating {}", overlay.display()), e);
    // A relative backing name is resolved against the overlay's own folder, so the overlay
    // is created in place (under a temporary name, 0600) and renamed once complete.
    let tmp = smolvm_sys::fs::AtomicFile::create(&overlay, smolvm_sys::fs::PRIVATE_FILE)
        .map_err(creating)?;
    let out = Command::new(qemu_img)
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&backing)
        .arg(tmp.tmp_path())
        .current_dir(paths.dir())
        .output()
        .map_err(|e| Error::io("running qemu-img create", e))?;
    if !out.status.success() {
        return Err(Error::io(
            format!("creating the disk overlay {}", overlay.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    tmp.commit().map_err(creating)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_their_magic() {
        assert_eq!(sniff(b"070701000000"), Format::Cpio);
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Format::CompressedCpio);
        let mut ext = vec![0u8; 2048];
        ext[EXT_MAGIC_OFFSET] = 0x53;
        ext[EXT_MAGIC_OFFSET + 1] = 0xef;
        assert_eq!(sniff(&ext), Format::Ext);
        assert_eq!(sniff(b"QFI\xfb\0\0\0\x03"), Format::Qcow2);
        assert_eq!(sniff(b"#!/bin/sh\n"), Format::Unknown);
    }

    #[test]
    fn only_a_static_executable_naming_our_port_is_the_agent() {
        assert_eq!(
            agent_problem(b"#!/bin/sh\n"),
            Some("is not a static executable")
        );
        let shell = std::fs::read("/bin/sh").unwrap();
        assert_eq!(agent_problem(&shell), Some("is not a static executable"));
    }

    #[test]
    fn unknown_files_and_qcow2_are_refused_naming_the_field() {
        let dir = std::env::temp_dir().join(format!("smolvm-disk-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let err = inspect_custom_rootfs(&text).unwrap_err().to_string();
        assert!(
            err.contains("rootfs_path") && err.contains("neither"),
            "{err}"
        );
        let qcow = dir.join("disk.qcow2");
        std::fs::write(&qcow, b"QFI\xfb\0\0\0\x03").unwrap();
        let err = inspect_custom_rootfs(&qcow).unwrap_err().to_string();
        assert!(err.contains("qemu-img convert"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
