//! Reading a qcow2 overlay's header before QEMU gets it.
//!
//! A qcow2 header may name a backing file and an external data file anywhere on the host.
//! Overlays come from our own `qemu-img create`, but also from snapshot and template
//! directories, which another process of the user (or a restored guest's owner) may have
//! tampered with. So before a VM starts, its overlay must name exactly the base we give it and
//! no external data file; QEMU then gets the base as a descriptor (`-blockdev ... backing=`)
//! and never opens a file by the name in the header anyway.

use std::io::{self, Read};
use std::path::Path;

const MAGIC: u32 = 0x5146_49fb;
/// Incompatible feature bit: the guest data lives in an external data file.
const EXTERNAL_DATA_FILE: u64 = 1 << 2;
/// Header extension naming the external data file.
const EXT_DATA_FILE_NAME: u32 = 0x4441_5441;
/// The longest backing file name QEMU itself accepts.
const MAX_BACKING_NAME: u32 = 1023;
/// How much of the file the header, its extensions and the backing name may span.
const MAX_HEADER_SPAN: u64 = 64 << 10;

/// What a qcow2 header refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The backing file name, as written in the header.
    pub backing: Option<String>,
    /// Whether the image keeps its data in an external file.
    pub external_data_file: bool,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn invalid(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.into())
}

/// Parses the header of the qcow2 image at `path` (opened without following a symlink).
pub fn read_header(path: &Path) -> io::Result<Header> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    let mut head = Vec::new();
    file.take(MAX_HEADER_SPAN).read_to_end(&mut head)?;
    parse(&head)
}

/// Parses a header from the first bytes of an image.
pub fn parse(head: &[u8]) -> io::Result<Header> {
    if head.len() < 72 || be32(head, 0) != MAGIC {
        return Err(invalid("not a qcow2 image"));
    }
    let version = be32(head, 4);
    let backing_offset = be64(head, 8);
    let backing_size = be32(head, 16);
    let (incompatible, header_length) = match version {
        2 => (0, 72u64),
        3 if head.len() >= 104 => (be64(head, 72), u64::from(be32(head, 100))),
        _ => return Err(invalid(format!("unsupported qcow2 version {version}"))),
    };
    let backing = if backing_offset == 0 {
        None
    } else {
        if backing_size > MAX_BACKING_NAME {
            return Err(invalid("backing file name too long"));
        }
        let start = usize::try_from(backing_offset).map_err(|_| invalid("bad backing offset"))?;
        let end = start + backing_size as usize;
        let name = head
            .get(start..end)
            .ok_or_else(|| invalid("backing file name outside the header"))?;
        Some(String::from_utf8(name.to_vec()).map_err(|_| invalid("backing name not UTF-8"))?)
    };
    // Header extensions: (type, length, data padded to 8 bytes) until type 0.
    let mut external_data_file = incompatible & EXTERNAL_DATA_FILE != 0;
    let mut at = usize::try_from(header_length).map_err(|_| invalid("bad header length"))?;
    while at + 8 <= head.len() {
        let (kind, len) = (be32(head, at), be32(head, at + 4) as usize);
        if kind == 0 {
            break;
        }
        if kind == EXT_DATA_FILE_NAME {
            external_data_file = true;
        }
        at += 8 + len.div_ceil(8) * 8;
    }
    Ok(Header {
        backing,
        external_data_file,
    })
}

/// Checks that the overlay at `path` names `expected_backing` as its backing file and keeps
/// its data in itself; the error says what it names instead.
pub fn check_overlay(path: &Path, expected_backing: &Path) -> io::Result<()> {
    let header = read_header(path)?;
    if header.external_data_file {
        return Err(invalid(format!(
            "{} names an external data file; refusing it",
            path.display()
        )));
    }
    let expected = expected_backing.to_string_lossy();
    let name = expected_backing
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match header.backing.as_deref() {
        Some(backing) if backing == expected || backing == name => Ok(()),
        other => Err(invalid(format!(
            "{} names {:?} as its base, not its own {}; refusing it",
            path.display(),
            other.unwrap_or("nothing"),
            name
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(backing: Option<&str>, incompatible: u64, data_file_ext: bool) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[72..80].copy_from_slice(&incompatible.to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
        let mut at = 112;
        if data_file_ext {
            h[at..at + 4].copy_from_slice(&EXT_DATA_FILE_NAME.to_be_bytes());
            h[at + 4..at + 8].copy_from_slice(&9u32.to_be_bytes());
            h[at + 8..at + 17].copy_from_slice(b"/etc/x.db");
            at += 8 + 16;
        }
        let _ = at;
        if let Some(name) = backing {
            h[8..16].copy_from_slice(&400u64.to_be_bytes());
            h[16..20].copy_from_slice(&(name.len() as u32).to_be_bytes());
            h[400..400 + name.len()].copy_from_slice(name.as_bytes());
        }
        h
    }

    #[test]
    fn reads_backing_names_and_data_files() {
        let h = parse(&image(Some("base.ext4"), 0, false)).unwrap();
        assert_eq!(h.backing.as_deref(), Some("base.ext4"));
        assert!(!h.external_data_file);
        assert!(
            parse(&image(None, EXTERNAL_DATA_FILE, false))
                .unwrap()
                .external_data_file
        );
        assert!(parse(&image(None, 0, true)).unwrap().external_data_file);
        assert!(parse(b"not qcow").is_err());
    }

    #[test]
    fn overlays_must_name_their_own_base() {
        let dir = std::env::temp_dir().join(format!("smolvm-qcow2-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let overlay = dir.join("overlay.qcow2");
        let base = dir.join("base.ext4");
        std::fs::write(&overlay, image(Some("base.ext4"), 0, false)).unwrap();
        check_overlay(&overlay, &base).unwrap();
        std::fs::write(&overlay, image(Some("/etc/shadow"), 0, false)).unwrap();
        let err = check_overlay(&overlay, &base).unwrap_err().to_string();
        assert!(err.contains("/etc/shadow"), "{err}");
        std::fs::write(&overlay, image(Some("base.ext4"), 0, true)).unwrap();
        assert!(check_overlay(&overlay, &base).is_err());
        // A symlink in place of the overlay is not followed.
        std::fs::remove_file(&overlay).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &overlay).unwrap();
        assert!(check_overlay(&overlay, &base).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
