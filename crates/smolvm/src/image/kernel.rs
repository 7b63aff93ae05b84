//! The guest kernel, built once from Debian's `linux-source-6.1` with the config fragment kept
//! in this repository (`kernel/smolvm.config`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use crate::dirs::DataDir;
use crate::error::{Error, Result};
use crate::image::{hash_inputs, Progress};

/// The config fragment applied on top of `make tinyconfig`.
pub const CONFIG_FRAGMENT: &str = include_str!("../../../../kernel/smolvm.config");

/// The Debian package carrying the kernel source.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";

/// The source tarball that package installs.
pub const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";

/// What the build keeps: the uncompressed ELF kernel. QEMU boots it through PVH, skipping
/// the self-decompression of a bzImage, which costs more than a second under emulation
/// (measured: 1.18 s against 2.2-2.8 s to a trivial /init), and Firecracker boots the same file.
const ARTIFACT: &str = "vmlinux";

/// What was recorded about the built kernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelMeta {
    /// Hash of the source version and the fragment.
    pub inputs_hash: String,
    /// The `linux-source-6.1` package version it was built from.
    pub source_version: String,
}

fn meta_path(data: &DataDir) -> PathBuf {
    data.kernel_dir().join("kernel.json")
}

/// The installed version of the kernel source package.
pub fn source_version() -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", SOURCE_PACKAGE])
        .output()
        .map_err(|e| Error::io("running dpkg-query", e))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || version.is_empty() || !Path::new(SOURCE_TARBALL).is_file() {
        return Err(Error::MissingFile {
            what: "kernel source",
            path: SOURCE_TARBALL.into(),
            hint: format!("install it with `apt-get install {SOURCE_PACKAGE}` (or run `smolvm setup` as root)"),
        });
    }
    Ok(version)
}

/// The cache key of a kernel built from `source_version`.
pub fn inputs_hash(source_version: &str) -> String {
    hash_inputs(&[
        source_version.as_bytes(),
        CONFIG_FRAGMENT.as_bytes(),
        ARTIFACT.as_bytes(),
    ])
}

/// Whether the built kernel matches the current inputs.
pub fn is_current(data: &DataDir, source_version: &str) -> bool {
    let meta: Option<KernelMeta> = std::fs::read(meta_path(data))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    data.kernel().is_file() && meta.is_some_and(|m| m.inputs_hash == inputs_hash(source_version))
}

/// Builds the kernel unless an up-to-date one exists. Returns whether it was built.
pub fn build(data: &DataDir, progress: &dyn Progress) -> Result<bool> {
    data.ensure_private()?;
    let version = source_version()?;
    if is_current(data, &version) {
        return Ok(false);
    }
    progress.step(&format!(
        "kernel ({SOURCE_PACKAGE} {version}, takes several minutes)"
    ));
    let tree = unpack_source(data, &version, progress)?;
    let fragment = data.build_dir().join("smolvm.config");
    smolvm_sys::fs::write_atomic(&fragment, CONFIG_FRAGMENT.as_bytes())
        .map_err(|e| Error::io(format!("writing {}", fragment.display()), e))?;
    // Regenerating .config touches every object's dependencies; skip it when the tree was
    // configured from the same inputs, so that a retried build resumes where it stopped.
    let hash = inputs_hash(&version);
    let config_stamp = tree.join(".smolvm-config-hash");
    if std::fs::read_to_string(&config_stamp).ok().as_deref() != Some(hash.as_str()) {
        run_make(&tree, &["tinyconfig"], progress)?;
        let merge = tree.join("scripts/kconfig/merge_config.sh");
        run(
            Command::new(merge)
                .current_dir(&tree)
                .args(["-m", ".config"])
                .arg(&fragment),
            "merge_config.sh",
            progress,
        )?;
        run_make(&tree, &["olddefconfig"], progress)?;
        verify_config(&tree)?;
        smolvm_sys::fs::write_atomic(&config_stamp, hash.as_bytes())
            .map_err(|e| Error::io("writing the config stamp", e))?;
    }
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    run_make(&tree, &[&format!("-j{jobs}"), "vmlinux"], progress)?;

    let built = tree.join("vmlinux");
    let bytes =
        std::fs::read(&built).map_err(|e| Error::io(format!("reading {}", built.display()), e))?;
    // Readable: a QEMU confined to another uid may need to read it.
    smolvm_sys::fs::write_atomic_mode(&data.kernel(), &bytes, smolvm_sys::fs::READABLE_FILE)
        .map_err(|e| Error::io(format!("writing {}", data.kernel().display()), e))?;
    let meta = KernelMeta {
        inputs_hash: inputs_hash(&version),
        source_version: version,
    };
    smolvm_sys::fs::write_atomic(
        &meta_path(data),
        &serde_json::to_vec_pretty(&meta).expect("serialises"),
    )
    .map_err(|e| Error::io("writing kernel.json", e))?;
    progress.finish(&format!("vmlinux {} KiB", bytes.len() / 1024));
    Ok(true)
}

/// Unpacks the source tarball into the build directory (once per source version).
fn unpack_source(data: &DataDir, version: &str, progress: &dyn Progress) -> Result<PathBuf> {
    let build = data.build_dir();
    let tree = build.join("linux-source-6.1");
    let stamp = build.join("linux-source.version");
    if tree.join("Makefile").is_file()
        && std::fs::read_to_string(&stamp).is_ok_and(|v| v == version)
    {
        return Ok(tree);
    }
    let _ = std::fs::remove_dir_all(&tree);
    smolvm_sys::fs::create_dir_private(&build)
        .map_err(|e| Error::io(format!("creating {}", build.display()), e))?;
    progress.tick("unpacking the kernel source");
    run(
        Command::new("tar")
            .arg("-xf")
            .arg(SOURCE_TARBALL)
            .arg("-C")
            .arg(&build),
        "tar",
        progress,
    )?;
    smolvm_sys::fs::write_atomic(&stamp, version.as_bytes())
        .map_err(|e| Error::io("writing the source stamp", e))?;
    Ok(tree)
}

/// Fails when any option of the fragment did not end up in `.config` as asked (Kconfig drops
/// options whose dependencies are missing without an error).
fn verify_config(tree: &Path) -> Result<()> {
    let config = std::fs::read_to_string(tree.join(".config"))
        .map_err(|e| Error::io("reading .config", e))?;
    let lines: std::collections::HashSet<&str> = config.lines().collect();
    let mut missing = Vec::new();
    for wanted in CONFIG_FRAGMENT.lines().filter(|l| l.starts_with("CONFIG_")) {
        let (key, value) = wanted.split_once('=').unwrap_or((wanted, ""));
        let ok = if value == "n" {
            !lines.iter().any(|l| l.starts_with(&format!("{key}=")))
        } else {
            lines.contains(wanted)
        };
        if !ok {
            missing.push(wanted);
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Build(format!(
            "kernel config options not applied: {}",
            missing.join(", ")
        )))
    }
}

fn run_make(tree: &Path, args: &[&str], progress: &dyn Progress) -> Result<()> {
    run(
        Command::new("make").current_dir(tree).args(args),
        "make",
        progress,
    )
}

/// Runs a build command, passing each output line to `progress` and keeping the last lines
/// for the error message.
fn run(cmd: &mut Command, what: &str, progress: &dyn Progress) -> Result<()> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("running {what} (is build-essential installed?)"), e))?;
    let stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut tail = std::collections::VecDeque::new();
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if tail.len() == 20 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        tail.into_iter().collect::<Vec<_>>().join("\n")
    });
    for line in BufReader::new(child.stdout.take().expect("piped"))
        .lines()
        .map_while(|l| l.ok())
    {
        progress.tick(line.trim());
    }
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("waiting for {what}"), e))?;
    let tail = errors.join().unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(Error::Build(format!("{what} failed ({status}):\n{tail}")))
    }
}
