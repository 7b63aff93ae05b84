//! The `debian` image: Debian bookworm (`debootstrap --variant=minbase`) with python3, any extra
//! packages, and our agent as `/init`, written into an ext4 image by `mkfs.ext4 -d` (no loop
//! mount). Cached by a hash of its inputs; a failed build leaves the previous image, if any,
//! as it was and nothing half-built behind.

mod host;
mod mirror;

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::dirs::DataDir;
use crate::error::{Error, Result};
use crate::image::{self, disk, ImageMeta, Progress};
pub use host::{allocated_mib, available_mib};
use host::{check_space, last_lines, lock, remove_stale_trees, remove_tree, run_logged, tree_mib};
pub use mirror::{mirror, DEFAULT_MIRROR};

/// The Debian release the image is built from.
pub const SUITE: &str = "bookworm";
/// The debootstrap variant: only essential packages and apt.
pub const VARIANT: &str = "minbase";
/// Packages every Debian image gets on top of the variant.
pub const BASE_PACKAGES: &[&str] = &["python3"];
/// Disk size the guest sees when none is asked for. The file is sparse: only the blocks in
/// use (about 150 MiB) take host disk space.
pub const DEFAULT_SIZE_MIB: u64 = 1024;
/// Smallest disk size accepted.
pub const MIN_SIZE_MIB: u64 = 256;
/// Largest disk size accepted (1 TiB).
pub const MAX_SIZE_MIB: u64 = 1 << 20;
/// Free space a build needs besides the extra packages: the unpacked tree before clean-up
/// (~260 MiB), the downloaded packages (~40 MiB), the image (~160 MiB) and the old image,
/// which stays in place until the new one is complete.
pub const BASE_SPACE_MIB: u64 = 768;
/// Free space assumed per extra package (a guess: most are small, a few are large).
pub const SPACE_PER_PACKAGE_MIB: u64 = 64;

/// Bumped whenever the customisation below changes, so that the image is rebuilt.
const LAYOUT: &[u8] = b"debian-layout-1";

/// Login shells read this (`sh -l`); `/etc/profile.d/*.sh` carries the managed environment
/// variables. The minimal image's, rather than Debian's own, which runs `$(id -u)`: under
/// emulation each process costs milliseconds, and every login-shell command would pay it.
pub use crate::image::initramfs::PROFILE;

/// Root's `~/.profile`: Debian's also runs `mesg n`, one more process per login shell, for a
/// terminal the guest does not have.
const ROOT_PROFILE: &str = r#"# ~/.profile: executed by Bourne-compatible login shells. Written by SmolVM.
if [ "${BASH-}" ] && [ -f ~/.bashrc ]; then
  . ~/.bashrc
fi
"#;

const HOSTS: &str = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n";

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianSpec {
    /// Image name.
    pub name: String,
    /// Extra Debian packages (python3 is always there), sorted, without duplicates.
    pub packages: Vec<String>,
    /// Disk size the guest sees, in MiB.
    pub size_mib: u64,
}

impl DebianSpec {
    /// The `debian` image that `smolvm setup` builds.
    pub fn default_image() -> Self {
        Self {
            name: image::DEBIAN.into(),
            packages: Vec::new(),
            size_mib: DEFAULT_SIZE_MIB,
        }
    }

    /// Validates a request. Without a name, the image is called `debian`, or after its extra
    /// packages (`debian-curl-git`) so that the default image stays as setup built it.
    pub fn new(name: Option<&str>, packages: &[String], size_mib: Option<u64>) -> Result<Self> {
        let mut packages: Vec<String> = packages
            .iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty() && !BASE_PACKAGES.contains(&p.as_str()))
            .collect();
        packages.sort();
        packages.dedup();
        for package in &packages {
            validate_package_name(package)?;
        }
        let size_mib = size_mib.unwrap_or(DEFAULT_SIZE_MIB);
        if !(MIN_SIZE_MIB..=MAX_SIZE_MIB).contains(&size_mib) {
            return Err(Error::InvalidConfig {
                field: "size",
                reason: format!(
                    "{size_mib} MiB requested; use {MIN_SIZE_MIB} to {MAX_SIZE_MIB} MiB"
                ),
            });
        }
        let name = match name {
            Some(name) => name.to_string(),
            None => default_name(&packages),
        };
        image::validate_image_name(&name)?;
        if name == image::MINIMAL {
            return Err(Error::InvalidConfig {
                field: "image name",
                reason: "\"minimal\" is the busybox initramfs image; choose another name".into(),
            });
        }
        Ok(Self {
            name,
            packages,
            size_mib,
        })
    }

    /// Every package installed on top of the variant.
    pub fn all_packages(&self) -> Vec<String> {
        let mut all: Vec<String> = BASE_PACKAGES.iter().map(|p| p.to_string()).collect();
        all.extend(self.packages.iter().cloned());
        all
    }

    /// The cache key: everything that changes the image's content.
    pub fn inputs_hash(&self, agent: &[u8]) -> String {
        image::hash_inputs(&[self.tree_hash().as_bytes(), agent])
    }

    /// Everything but the agent: while it matches, a new agent only replaces `/init`.
    pub fn tree_hash(&self) -> String {
        let packages = self.all_packages().join(",");
        let size = self.size_mib.to_string();
        image::hash_inputs(&[
            env!("CARGO_PKG_VERSION").as_bytes(),
            LAYOUT,
            SUITE.as_bytes(),
            VARIANT.as_bytes(),
            packages.as_bytes(),
            size.as_bytes(),
            PROFILE.as_bytes(),
            ROOT_PROFILE.as_bytes(),
        ])
    }

    /// Free space the build needs, in MiB.
    pub fn space_needed_mib(&self) -> u64 {
        BASE_SPACE_MIB + SPACE_PER_PACKAGE_MIB * self.packages.len() as u64
    }
}

/// The name an image gets when none is given: `debian`, or `debian-` and its extra packages
/// when they fit in a name, else `debian-` and a hash of them.
pub fn default_name(packages: &[String]) -> String {
    if packages.is_empty() {
        return image::DEBIAN.into();
    }
    let joined: String = packages
        .join("-")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let name = format!("{}-{joined}", image::DEBIAN);
    if name.len() <= 40 {
        name
    } else {
        let hash = image::hash_inputs(&[packages.join(",").as_bytes()]);
        format!("{}-{}", image::DEBIAN, &hash[..8])
    }
}

/// Debian package names: lowercase letters, digits, `+`, `-` and `.`, at least two characters,
/// starting with a letter or digit (Debian policy 5.6.1). Checked here because the names go
/// on debootstrap's command line.
pub fn validate_package_name(name: &str) -> Result<()> {
    let ok = name.len() >= 2
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field: "packages",
            reason: format!(
                "{name:?} is not a Debian package name (lowercase letters, digits, '+', '-', '.')"
            ),
        })
    }
}

/// Builds the Debian image `spec` unless an up-to-date one exists. Returns whether it was
/// built. Needs root (debootstrap chroots into the new tree and creates device nodes there).
pub fn build(
    data: &DataDir,
    spec: &DebianSpec,
    agent: &Path,
    progress: &dyn Progress,
) -> Result<bool> {
    data.ensure_private()?;
    let agent_bytes = std::fs::read(agent)
        .map_err(|e| Error::io(format!("reading the agent {}", agent.display()), e))?;
    if !image::is_static_elf(&agent_bytes) {
        return Err(Error::Build(format!(
            "{} is not a static executable; build the agent with scripts/build-agent.sh",
            agent.display()
        )));
    }
    let hash = spec.inputs_hash(&agent_bytes);
    if image::is_current(data, &spec.name, &hash) {
        return Ok(false);
    }
    let locks = data.build_dir().join("locks");
    smolvm_sys::fs::create_dir_private(&locks)
        .map_err(|e| Error::io(format!("creating {}", locks.display()), e))?;
    // One build per image name at a time; a second `setup` waits, then finds it current.
    let lock_path = locks.join(format!("image-{}.lock", spec.name));
    let _lock =
        lock(&lock_path).map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
    if image::is_current(data, &spec.name, &hash) {
        return Ok(false);
    }
    if let Some(old) = image::meta_of(data, &spec.name) {
        let base = image::ext4_path(data, &spec.name);
        if old.tree_hash.as_deref() == Some(spec.tree_hash().as_str()) && base.is_file() {
            // Only the agent changed (the usual case while developing it): swap /init in a
            // copy of the image instead of bootstrapping Debian again.
            swap_agent(data, spec, old, hash, &agent_bytes, progress)?;
            return Ok(true);
        }
    }
    let tools = Tools::find()?;
    if smolvm_sys::process::euid() != 0 {
        return Err(failed(
            spec,
            "checking privileges",
            "debootstrap needs root (it chroots into the new system); run `smolvm setup` or \
             `smolvm image build` as root",
        ));
    }
    check_space(data.root(), spec.space_needed_mib(), &spec.name)?;

    let started = Instant::now();
    progress.step(&format!(
        "image {} (Debian {SUITE} {VARIANT} + {}; about a minute)",
        spec.name,
        spec.all_packages().join(" ")
    ));
    let scratch = data.build_dir();
    remove_stale_trees(&scratch, &spec.name);
    let tree = scratch.join(format!("image-{}.{}", spec.name, std::process::id()));
    let dir = data.image_dir(&spec.name);
    let existed = dir.exists();
    let result = build_in(data, spec, &tools, &agent_bytes, &tree, progress);
    remove_tree(&tree);
    let ext4 = match result {
        Ok(ext4) => ext4,
        Err(e) => {
            let _ = std::fs::remove_file(tmp_image(data, spec));
            if !existed {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return Err(e);
        }
    };
    let build_secs = started.elapsed().as_secs_f64();
    let target = install(
        data,
        spec,
        &ext4,
        ImageMeta {
            name: spec.name.clone(),
            kind: image::KIND_EXT4.into(),
            inputs_hash: hash,
            size_bytes: std::fs::metadata(&ext4).map_or(0, |m| m.len()),
            base: Some(format!("debian {SUITE} {VARIANT}")),
            packages: spec.all_packages(),
            built_at_unix: smolvm_sys::fs::unix_now(),
            build_ms: started.elapsed().as_millis() as u64,
            tree_hash: Some(spec.tree_hash()),
        },
    )?;
    progress.finish(&format!(
        "{} MiB disk, {} MiB used, built in {build_secs:.0} s",
        spec.size_mib,
        allocated_mib(&target)
    ));
    Ok(true)
}

/// Installs a copy of the existing image with `agent` as its `/init` (a fraction of a second).
fn swap_agent(
    data: &DataDir,
    spec: &DebianSpec,
    old: ImageMeta,
    inputs_hash: String,
    agent: &[u8],
    progress: &dyn Progress,
) -> Result<()> {
    progress.step(&format!("image {} (new agent as /init)", spec.name));
    let base = image::ext4_path(data, &spec.name);
    let tmp = tmp_image(data, spec);
    if let Err(e) = disk::copy_with_new_init(&base, &tmp, agent, &data.build_dir()) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let meta = ImageMeta {
        inputs_hash,
        built_at_unix: smolvm_sys::fs::unix_now(),
        ..old
    };
    install(data, spec, &tmp, meta)?;
    progress.finish("agent replaced");
    Ok(())
}

/// Puts a finished image in place (a rename: VMs holding the old file keep it) and records
/// it. Returns the image's path.
fn install(data: &DataDir, spec: &DebianSpec, ext4: &Path, meta: ImageMeta) -> Result<PathBuf> {
    let target = image::ext4_path(data, &spec.name);
    std::fs::rename(ext4, &target)
        .map_err(|e| Error::io(format!("installing {}", target.display()), e))?;
    image::write_meta(&data.image_dir(&spec.name), &meta)?;
    Ok(target)
}

fn failed(spec: &DebianSpec, step: &'static str, reason: impl Into<String>) -> Error {
    Error::ImageBuild {
        image: spec.name.clone(),
        step,
        reason: reason.into(),
    }
}

fn tmp_image(data: &DataDir, spec: &DebianSpec) -> PathBuf {
    data.image_dir(&spec.name).join(".rootfs.ext4.tmp")
}

/// The host programs a build runs.
struct Tools {
    debootstrap: PathBuf,
    mkfs: PathBuf,
}

impl Tools {
    fn find() -> Result<Self> {
        let find = |name: &'static str, package: &str| {
            disk::find_sbin(name).ok_or_else(|| Error::MissingProgram {
                program: name,
                hint: format!(
                    "install it with `apt-get install {package}` (or run `smolvm setup` as root)"
                ),
            })
        };
        let tools = Self {
            debootstrap: find("debootstrap", "debootstrap")?,
            mkfs: find("mkfs.ext4", "e2fsprogs")?,
        };
        find("debugfs", "e2fsprogs")?;
        Ok(tools)
    }
}

/// debootstrap, customisation, mkfs. Returns the finished image under its temporary name.
fn build_in(
    data: &DataDir,
    spec: &DebianSpec,
    tools: &Tools,
    agent: &[u8],
    tree: &Path,
    progress: &dyn Progress,
) -> Result<PathBuf> {
    let cache = data.root().join("cache").join("debootstrap");
    for dir in [tree, &cache, &data.image_dir(&spec.name)] {
        smolvm_sys::fs::create_dir_private(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mirror = mirror();
    progress.tick(&format!("debootstrap from {mirror}"));
    let mut debootstrap = Command::new(&tools.debootstrap);
    debootstrap
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={}", spec.all_packages().join(",")))
        .arg("--components=main")
        .arg(format!("--cache-dir={}", cache.display()))
        .arg(SUITE)
        .arg(tree)
        .arg(&mirror);
    if let Err(mut detail) = run_logged(&mut debootstrap, progress) {
        // When a package fails to install, debootstrap points at its log, which goes away
        // with the tree: quote its end.
        if detail.contains("debootstrap.log") {
            if let Ok(log) = std::fs::read_to_string(tree.join("debootstrap/debootstrap.log")) {
                detail.push_str("\nend of debootstrap.log:\n");
                detail.push_str(&last_lines(&log, 8));
            }
        }
        return Err(failed(spec, "debootstrap", detail));
    }

    progress.tick("installing the agent as /init and trimming the tree");
    customise(tree, agent).map_err(|e| failed(spec, "customising the tree", e.to_string()))?;
    let used_mib = tree_mib(tree);
    // ext4 needs room beyond the files for its metadata, journal and the guest's own writes.
    let needed_mib = used_mib + used_mib / 4 + 64;
    if spec.size_mib < needed_mib {
        return Err(Error::InvalidConfig {
            field: "size",
            reason: format!(
                "image {} holds {used_mib} MiB of files, which does not fit in {} MiB; use \
                 --size {} or more",
                spec.name,
                spec.size_mib,
                needed_mib.next_multiple_of(64)
            ),
        });
    }
    check_space(data.root(), used_mib + 64, &spec.name)?;

    progress.tick(&format!("mkfs.ext4 -d ({used_mib} MiB of files)"));
    let ext4 = tmp_image(data, spec);
    let _ = std::fs::remove_file(&ext4);
    let mut mkfs = Command::new(&tools.mkfs);
    // lazy_itable_init=0: zero the inode tables now (they stay sparse in the file), or every
    // VM's kernel would zero them in the background at boot, into its own overlay.
    mkfs.args([
        "-F", "-q", "-t", "ext4", "-b", "4096", "-m", "0", "-L", "smolvm",
    ])
    .args([
        "-E",
        "root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0",
    ])
    .arg("-d")
    .arg(tree)
    .arg(&ext4)
    .arg(format!("{}M", spec.size_mib));
    run_logged(&mut mkfs, progress).map_err(|tail| failed(spec, "mkfs.ext4", tail))?;
    if !disk::ext_has_regular_file(&ext4, "/init")? {
        return Err(failed(
            spec,
            "checking the image",
            "/init is missing from the new image",
        ));
    }
    let file =
        File::open(&ext4).map_err(|e| Error::io(format!("opening {}", ext4.display()), e))?;
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", ext4.display()), e))?;
    // The base is shared by every VM and must never change: make accidental writes fail.
    std::fs::set_permissions(&ext4, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| Error::io(format!("protecting {}", ext4.display()), e))?;
    Ok(ext4)
}

/// Turns the debootstrapped tree into a SmolVM guest.
fn customise(tree: &Path, agent: &[u8]) -> std::io::Result<()> {
    let write = |path: &str, bytes: &[u8], mode: u32| -> std::io::Result<()> {
        let path = tree.join(path);
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, bytes)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
    };
    write("init", agent, 0o755)?;
    std::fs::create_dir_all(tree.join("etc/profile.d"))?;
    write("etc/profile", PROFILE.as_bytes(), 0o644)?;
    write("root/.profile", ROOT_PROFILE.as_bytes(), 0o644)?;
    // debootstrap copies these from the build host; the guest has its own (the agent sets
    // the hostname at boot) and no network.
    write("etc/hostname", b"smolvm\n", 0o644)?;
    write("etc/hosts", HOSTS.as_bytes(), 0o644)?;
    let _ = std::fs::remove_file(tree.join("etc/resolv.conf"));
    // Downloaded packages, indexes, manuals and translations: about 130 MiB nobody reads in a
    // sandbox. Copyright files stay.
    for dir in [
        "var/cache/apt/archives",
        "var/lib/apt/lists",
        "usr/share/man",
        "usr/share/info",
        "usr/share/locale",
    ] {
        empty_dir(&tree.join(dir))?;
    }
    for entry in std::fs::read_dir(tree.join("var/cache/apt"))?.flatten() {
        if entry.path().extension().is_some_and(|e| e == "bin") {
            std::fs::remove_file(entry.path())?;
        }
    }
    for package in std::fs::read_dir(tree.join("usr/share/doc"))?.flatten() {
        if !package.file_type()?.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(package.path())?.flatten() {
            if entry.file_name() != "copyright" {
                remove_any(&entry.path())?;
            }
        }
    }
    Ok(())
}

/// Deletes what `dir` holds, except the directories apt expects (`partial`) and lock files.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name == "partial" || name == "lock" || name == "auxfiles" {
            continue;
        }
        remove_any(&entry.path())?;
    }
    Ok(())
}

fn remove_any(path: &Path) -> std::io::Result<()> {
    if path.symlink_metadata()?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_default_to_debian_or_after_the_packages() {
        let spec = DebianSpec::new(None, &[], None).unwrap();
        assert_eq!(spec, DebianSpec::default_image());
        let spec =
            DebianSpec::new(None, &["jq".into(), "curl".into(), "python3".into()], None).unwrap();
        assert_eq!(spec.name, "debian-curl-jq");
        assert_eq!(spec.packages, ["curl", "jq"]);
        assert_eq!(spec.all_packages(), ["python3", "curl", "jq"]);
        let many: Vec<String> = (0..20).map(|i| format!("package{i}")).collect();
        let name = DebianSpec::new(None, &many, None).unwrap().name;
        assert!(name.starts_with("debian-") && name.len() == 15, "{name}");
        let spec = DebianSpec::new(None, &["g++".into()], None).unwrap();
        assert_eq!(spec.name, "debian-g--");
    }

    #[test]
    fn bad_requests_name_the_field() {
        for (packages, size, name, field) in [
            (vec!["Bad Name".to_string()], None, None, "packages"),
            (vec!["a,b".to_string()], None, None, "packages"),
            (vec![], Some(10), None, "size"),
            (vec![], None, Some("Nope"), "image name"),
            (vec![], None, Some("floor"), "image name"),
            (vec![], None, Some("minimal"), "image name"),
        ] {
            let err = DebianSpec::new(name, &packages, size)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn inputs_hash_follows_packages_size_and_agent() {
        let a = DebianSpec::default_image();
        let b = DebianSpec::new(Some("debian"), &["jq".into()], None).unwrap();
        let c = DebianSpec::new(Some("debian"), &[], Some(2048)).unwrap();
        assert_ne!(a.inputs_hash(b"x"), b.inputs_hash(b"x"));
        assert_ne!(a.inputs_hash(b"x"), c.inputs_hash(b"x"));
        assert_ne!(a.inputs_hash(b"x"), a.inputs_hash(b"y"));
        assert_eq!(a.inputs_hash(b"x"), a.inputs_hash(b"x"));
    }
}
