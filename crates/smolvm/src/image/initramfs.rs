//! The `minimal` image: an initramfs of busybox and our agent, written as a newc cpio archive.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;

use cpio::newc;

use crate::dirs::DataDir;
use crate::error::{Error, Result};
use crate::image::{self, ImageMeta, Progress};

/// Login shells read this; it pulls in `/etc/profile.d/*.sh`, where the managed environment
/// variables live.
pub const PROFILE: &str = r#"# /etc/profile: read by login shells (sh -l). Written by SmolVM.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ -d /etc/profile.d ]; then
  for f in /etc/profile.d/*.sh; do
    [ -r "$f" ] && . "$f"
  done
  unset f
fi
"#;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n";
const GROUP: &str = "root:x:0:\ntty:x:5:\n";

/// Bumped whenever the list of entries changes, so that `setup` rebuilds the image.
const LAYOUT: &[u8] = b"layout-2";

/// Where busybox-static installs its binary.
pub const BUSYBOX: &str = "/bin/busybox";

/// One entry of the archive.
enum Entry {
    Dir(&'static str),
    File {
        path: String,
        mode: u32,
        data: Vec<u8>,
    },
    Symlink {
        path: String,
        target: String,
    },
    CharDev {
        path: &'static str,
        major: u32,
        minor: u32,
    },
}

/// Archive writer that numbers inodes.
struct Archive<W: Write> {
    out: Option<W>,
    ino: u32,
}

impl<W: Write> Archive<W> {
    fn add(&mut self, entry: &Entry) -> std::io::Result<()> {
        self.ino += 1;
        let (name, mode, data): (&str, u32, &[u8]) = match entry {
            Entry::Dir(path) => (path, 0o040755, b""),
            Entry::File { path, mode, data } => (path, 0o100000 | mode, data),
            Entry::Symlink { path, target } => (path, 0o120777, target.as_bytes()),
            Entry::CharDev { path, .. } => (path, 0o020600, b""),
        };
        let mut builder = newc::Builder::new(name).ino(self.ino).mode(mode).nlink(1);
        if let Entry::CharDev { major, minor, .. } = entry {
            builder = builder.rdev_major(*major).rdev_minor(*minor);
        }
        if let Entry::Dir(_) = entry {
            builder = builder.nlink(2);
        }
        let out = self.out.take().expect("archive writer present");
        let mut writer = builder.write(out, data.len() as u32);
        writer.write_all(data)?;
        self.out = Some(writer.finish()?);
        Ok(())
    }

    fn finish(mut self) -> std::io::Result<W> {
        newc::trailer(self.out.take().expect("archive writer present"))
    }
}

/// The directories every guest has.
const DIRS: &[&str] = &[
    "bin",
    "sbin",
    "usr",
    "usr/bin",
    "usr/sbin",
    "etc",
    "etc/profile.d",
    "root",
    "dev",
    "proc",
    "sys",
    "tmp",
    "run",
    "var",
    "var/tmp",
    "mnt",
];

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingFile {
            what,
            path: path.to_path_buf(),
            hint: "run `smolvm setup` (it installs busybox-static and finds the agent)".into(),
        },
        _ => Error::io(format!("reading {}", path.display()), e),
    })
}

fn require_static(bytes: &[u8], path: &Path) -> Result<()> {
    if image::is_static_elf(bytes) {
        Ok(())
    } else {
        Err(Error::Build(format!(
            "{} is not a static executable; the guest has no dynamic loader (build the agent with \
             scripts/build-agent.sh; install busybox-static, not busybox)",
            path.display()
        )))
    }
}

/// Busybox applet paths (`bin/sh`, `usr/bin/env`, ...) as busybox itself lists them.
fn busybox_applets(busybox: &Path) -> Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .map_err(|e| Error::io(format!("running {} --list-full", busybox.display()), e))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != "bin/busybox" && !l.contains(".."))
        .collect())
}

/// Builds (or keeps, when its inputs did not change) the `minimal` image and the `floor` image.
/// Returns whether anything was rebuilt.
pub fn build(data: &DataDir, agent: &Path, progress: &dyn Progress) -> Result<bool> {
    data.ensure_private()?;
    let agent_bytes = read(agent, "guest agent")?;
    require_static(&agent_bytes, agent)?;
    let busybox = Path::new(BUSYBOX);
    let busybox_bytes = read(busybox, "busybox (package busybox-static)")?;
    require_static(&busybox_bytes, busybox)?;
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    let minimal_hash = image::hash_inputs(&[
        version,
        LAYOUT,
        &agent_bytes,
        &busybox_bytes,
        PROFILE.as_bytes(),
    ]);
    let floor_hash = image::hash_inputs(&[version, &agent_bytes]);
    let mut rebuilt = false;

    if !image::is_current(data, image::MINIMAL, &minimal_hash) {
        progress.step("image minimal (busybox + agent initramfs)");
        let mut entries: Vec<Entry> = DIRS.iter().map(|d| Entry::Dir(d)).collect();
        entries.push(Entry::CharDev {
            path: "dev/console",
            major: 5,
            minor: 1,
        });
        entries.push(Entry::CharDev {
            path: "dev/null",
            major: 1,
            minor: 3,
        });
        entries.push(Entry::File {
            path: "init".into(),
            mode: 0o755,
            data: agent_bytes.clone(),
        });
        entries.push(Entry::File {
            path: "bin/busybox".into(),
            mode: 0o755,
            data: busybox_bytes,
        });
        for applet in busybox_applets(busybox)? {
            entries.push(Entry::Symlink {
                path: applet,
                target: "/bin/busybox".into(),
            });
        }
        // Busybox-static has no printenv applet; the agent answers to that name.
        entries.push(Entry::Symlink {
            path: "usr/bin/printenv".into(),
            target: "/init".into(),
        });
        entries.push(Entry::File {
            path: "etc/profile".into(),
            mode: 0o644,
            data: PROFILE.into(),
        });
        entries.push(Entry::File {
            path: "etc/passwd".into(),
            mode: 0o644,
            data: PASSWD.into(),
        });
        entries.push(Entry::File {
            path: "etc/group".into(),
            mode: 0o644,
            data: GROUP.into(),
        });
        write_image(data, image::MINIMAL, &minimal_hash, &entries, progress)?;
        rebuilt = true;
    }
    if !image::is_current(data, image::FLOOR, &floor_hash) {
        progress.step("image floor (benchmark: /init resets at once)");
        let entries = vec![
            Entry::Dir("dev"),
            Entry::Dir("proc"),
            Entry::CharDev {
                path: "dev/console",
                major: 5,
                minor: 1,
            },
            Entry::File {
                path: "init".into(),
                mode: 0o755,
                data: agent_bytes,
            },
        ];
        write_image(data, image::FLOOR, &floor_hash, &entries, progress)?;
        rebuilt = true;
    }
    Ok(rebuilt)
}

fn write_image(
    data: &DataDir,
    name: &str,
    hash: &str,
    entries: &[Entry],
    progress: &dyn Progress,
) -> Result<()> {
    let dir = data.image_dir(name);
    smolvm_sys::fs::create_dir_private(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let path = image::initramfs_path(data, name);
    let written = (|| -> std::io::Result<u64> {
        // Readable: a QEMU confined to another uid may need to read it.
        let mut tmp = smolvm_sys::fs::AtomicFile::create(&path, smolvm_sys::fs::READABLE_FILE)?;
        let mut archive = Archive {
            out: Some(BufWriter::new(tmp.file())),
            ino: 0,
        };
        for entry in entries {
            archive.add(entry)?;
        }
        archive.finish()?.into_inner().map_err(|e| e.into_error())?;
        tmp.commit()?;
        Ok(std::fs::metadata(&path)?.len())
    })();
    let size_bytes = written.map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    image::write_meta(
        &dir,
        &ImageMeta {
            name: name.into(),
            kind: image::KIND_INITRAMFS.into(),
            inputs_hash: hash.into(),
            size_bytes,
            base: None,
            packages: Vec::new(),
            built_at_unix: smolvm_sys::fs::unix_now(),
            build_ms: 0,
            tree_hash: None,
        },
    )?;
    progress.finish(&format!(
        "{} entries, {} KiB",
        entries.len(),
        size_bytes / 1024
    ));
    Ok(())
}
