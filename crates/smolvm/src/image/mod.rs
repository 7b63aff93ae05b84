//! Guest images and the guest kernel: building them once, finding them at boot.

pub mod initramfs;
pub mod kernel;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::dirs::DataDir;
use crate::error::{Error, Result};

/// The busybox initramfs image: the fastest start.
pub const MINIMAL: &str = "minimal";
/// The benchmark-only image whose `/init` resets the machine at once (the boot floor).
pub const FLOOR: &str = "floor";

/// File name of an initramfs image's root filesystem.
const INITRAMFS_FILE: &str = "initramfs.cpio";
/// File name of an image's metadata.
const IMAGE_META_FILE: &str = "image.json";

/// What was recorded about a built image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// Image name.
    pub name: String,
    /// `initramfs` for now.
    pub kind: String,
    /// Hash of every input; a different hash means the image must be rebuilt.
    pub inputs_hash: String,
    /// Size of the root filesystem in bytes.
    pub size_bytes: u64,
}

/// The root filesystem of image `name`, or an error that says how to get it.
pub fn rootfs_of(data: &DataDir, name: &str) -> Result<PathBuf> {
    let path = data.image_dir(name).join(INITRAMFS_FILE);
    if path.is_file() {
        return Ok(path);
    }
    if name == MINIMAL || name == FLOOR {
        return Err(Error::MissingFile {
            what: "guest image",
            path,
            hint: "run `smolvm setup` to build it".into(),
        });
    }
    let available = list_images(data)
        .iter()
        .map(|m| m.name.clone())
        .collect::<Vec<_>>();
    Err(Error::InvalidConfig {
        field: "image",
        reason: format!(
            "unknown image {name:?}; available: {}",
            if available.is_empty() {
                "none (run `smolvm setup`)".to_string()
            } else {
                available.join(", ")
            }
        ),
    })
}

/// Every built image (the benchmark floor image excluded).
pub fn list_images(data: &DataDir) -> Vec<ImageMeta> {
    let Ok(entries) = std::fs::read_dir(data.root().join("images")) else {
        return Vec::new();
    };
    let mut images: Vec<ImageMeta> = entries
        .flatten()
        .filter_map(|e| read_meta(&e.path()))
        .filter(|m| m.name != FLOOR)
        .collect();
    images.sort_by(|a, b| a.name.cmp(&b.name));
    images
}

fn read_meta(dir: &Path) -> Option<ImageMeta> {
    serde_json::from_slice(&std::fs::read(dir.join(IMAGE_META_FILE)).ok()?).ok()
}

/// Whether image `name` exists and was built from inputs hashing to `inputs_hash`.
pub fn is_current(data: &DataDir, name: &str, inputs_hash: &str) -> bool {
    let dir = data.image_dir(name);
    dir.join(INITRAMFS_FILE).is_file()
        && read_meta(&dir).is_some_and(|m| m.inputs_hash == inputs_hash)
}

/// Hex SHA-256 of several inputs, each length-prefixed so that boundaries count.
pub fn hash_inputs(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Reports build progress to whoever runs the build (the CLI draws it with `indicatif`).
pub trait Progress: Sync {
    /// A new step starts.
    fn step(&self, name: &str);
    /// Something happened within the step (a compiled file, a written entry).
    fn tick(&self, message: &str);
    /// The step ended.
    fn finish(&self, message: &str);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn step(&self, _: &str) {}
    fn tick(&self, _: &str) {}
    fn finish(&self, _: &str) {}
}

/// Finds the guest agent binary: `$SMOLVM_AGENT`, else `smolvm-agent` beside the running
/// program or in the static build's target folder of a source checkout.
pub fn find_agent() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("SMOLVM_AGENT").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("locating the running program", e))?;
    let mut candidates = Vec::new();
    for dir in exe.ancestors().skip(1).take(4) {
        candidates.push(dir.join("x86_64-unknown-linux-gnu/release/smolvm-agent"));
        candidates.push(dir.join("smolvm-agent"));
    }
    // A plain `cargo build` also leaves a dynamically linked agent beside smolvm: skip it.
    let usable = |p: &PathBuf| std::fs::read(p).is_ok_and(|bytes| is_static_elf(&bytes));
    candidates
        .into_iter()
        .find(usable)
        .ok_or_else(|| Error::MissingFile {
            what: "guest agent (smolvm-agent)",
            path: exe.with_file_name("smolvm-agent"),
            hint: "build it with `scripts/build-agent.sh` or point SMOLVM_AGENT at it".into(),
        })
}

/// Whether an ELF file is statically linked (has no `PT_INTERP` program header). The agent
/// runs in guests without a dynamic loader, so a dynamic build would fail at boot.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        bytes
            .get(at..at + 4)
            .is_some_and(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP)
    })
}

/// Writes the image metadata next to its root filesystem.
pub(crate) fn write_meta(dir: &Path, meta: &ImageMeta) -> Result<()> {
    let json = serde_json::to_vec_pretty(meta).expect("metadata serialises");
    crate::fsutil::write_atomic(&dir.join(IMAGE_META_FILE), &json).map_err(|e| {
        Error::io(
            format!("writing {}", dir.join(IMAGE_META_FILE).display()),
            e,
        )
    })
}

/// Where an initramfs image's root filesystem goes.
pub(crate) fn initramfs_path(data: &DataDir, name: &str) -> PathBuf {
    data.image_dir(name).join(INITRAMFS_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_and_dynamic_elves_are_told_apart() {
        let shell = std::fs::read("/bin/sh").unwrap();
        assert!(
            !is_static_elf(&shell),
            "/bin/sh is dynamically linked on Debian"
        );
        assert!(!is_static_elf(b"#!/bin/sh\n"));
    }

    #[test]
    fn input_hash_depends_on_boundaries() {
        assert_ne!(hash_inputs(&[b"ab", b"c"]), hash_inputs(&[b"a", b"bc"]));
        assert_eq!(hash_inputs(&[b"x"]), hash_inputs(&[b"x"]));
    }

    #[test]
    fn unknown_image_lists_what_exists() {
        let err = rootfs_of(&DataDir::at("/nonexistent"), "nope")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown image \"nope\"") && err.contains("smolvm setup"),
            "{err}"
        );
    }
}
