//! Confining the VMM process, after Firecracker's jailer.
//!
//! QEMU is the largest attack surface we run: a guest that breaks out of the device model
//! lands in QEMU's process. So, whatever the caller:
//! - QEMU runs with its own seccomp filter (`-sandbox on,obsolete=deny,elevateprivileges=deny,
//!   spawn=deny,resourcecontrol=deny`): no `exec`, no `fork`, no `setuid`.
//! - It opens no files of ours by name: every file and socket it uses is a descriptor the
//!   supervisor hands it (see [`crate::qemu`]), and its monitor (QMP) is a socket pair whose
//!   other end only the supervisor holds — no `qmp.sock` that another process could reach.
//!
//! And when the supervisor runs as root (the documented setup), before QEMU's `exec`:
//! - its own mount, network, IPC, UTS and PID namespaces: the network namespace is empty (no
//!   interface but a down loopback), the PID namespace holds QEMU alone, and its root is a
//!   fresh read-only tmpfs with `/usr` (+ the `/lib`-style links), `ld.so.cache`, a few
//!   device nodes and its own `/proc` — none of the data directory, no other VM's files;
//! - an unprivileged user (`smolvm-qemu`, made by `smolvm setup`; `nobody` if missing), no
//!   supplementary groups but the one owning `/dev/kvm`, and `no_new_privs`.
//!
//! QEMU's own `-runas` cannot be combined with its seccomp filter (7.2 dies with SIGSYS), so
//! privileges are dropped here, in the forked child, before `exec`.
//!
//! `SMOLVM_UNCONFINED=1` turns all of this off (for debugging and for `smolvm bench`'s
//! comparison); `doctor` and `info` say so.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The user confined QEMUs run as (made by `smolvm setup`).
pub const QEMU_USER: &str = "smolvm-qemu";

/// The unprivileged identity a jailed QEMU runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// The group of `/dev/kvm`, kept as a supplementary group when the VM uses KVM.
    pub kvm_gid: Option<u32>,
}

/// How the VMM process is confined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// Nothing (`SMOLVM_UNCONFINED=1`).
    Off,
    /// QEMU's seccomp filter and descriptor-only file access; the caller's user and
    /// namespaces (the supervisor is not root).
    Seccomp,
    /// Seccomp, an unprivileged user and namespaces of its own (the supervisor is root).
    Jailed(Jail),
}

impl Confinement {
    /// Whether QEMU gets its seccomp filter.
    pub fn seccomp(&self) -> bool {
        !matches!(self, Self::Off)
    }

    /// A one-line description for logs, `doctor` and `info`.
    pub fn describe(&self) -> String {
        match self {
            Self::Off => "off (SMOLVM_UNCONFINED=1)".into(),
            Self::Seccomp => {
                "seccomp; runs as the calling user in its namespaces (run as root for a jail)"
                    .into()
            }
            Self::Jailed(jail) => format!(
                "seccomp, uid {} ({}), own mount/network/PID/IPC/UTS namespaces, no_new_privs",
                jail.identity.uid, jail.user_name
            ),
        }
    }
}

/// A jail for one QEMU process: what its root shows and who it runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jail {
    /// The empty directory the jail's tmpfs root is mounted on.
    pub root: PathBuf,
    /// Who QEMU runs as.
    pub identity: Identity,
    /// The user's name (for messages).
    pub user_name: String,
    /// Extra host paths to expose read-only (a QEMU binary outside `/usr`).
    pub extra_ro: Vec<PathBuf>,
    /// Expose `/dev/kvm` (read-write) and `/sys` (read-only).
    pub kvm: bool,
}

/// Chooses the confinement for a VM whose jail root would be `root`: off when
/// `SMOLVM_UNCONFINED=1`, a jail as root, seccomp otherwise.
pub fn choose(root: &Path, qemu: &Path, kvm: bool) -> Confinement {
    if std::env::var_os("SMOLVM_UNCONFINED").is_some_and(|v| v == "1") {
        return Confinement::Off;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Confinement::Seccomp;
    }
    let (identity, user_name) = match lookup_user(QEMU_USER) {
        Some(ids) => (ids, QEMU_USER.to_string()),
        None => {
            tracing::warn!(
                "user {QEMU_USER} does not exist (run `smolvm setup`); QEMU runs as nobody"
            );
            (
                Identity {
                    uid: 65534,
                    gid: 65534,
                    kvm_gid: None,
                },
                "nobody".to_string(),
            )
        }
    };
    let kvm_gid = kvm
        .then(|| std::fs::metadata("/dev/kvm").ok())
        .flatten()
        .map(|m| std::os::unix::fs::MetadataExt::gid(&m));
    let extra_ro = (!qemu.starts_with("/usr"))
        .then(|| qemu.to_path_buf())
        .into_iter()
        .collect();
    Confinement::Jailed(Jail {
        root: root.to_path_buf(),
        identity: Identity {
            kvm_gid,
            ..identity
        },
        user_name,
        extra_ro,
        kvm,
    })
}

/// The uid and gid of `name`, if that user exists.
pub fn lookup_user(name: &str) -> Option<Identity> {
    let c_name = CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe_zeroed_passwd();
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; `buf` outlives the use of `pwd`'s strings
    // (none are read).
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(Identity {
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        kvm_gid: None,
    })
}

fn unsafe_zeroed_passwd() -> libc::passwd {
    // SAFETY: passwd is a plain C struct of integers and pointers; all-zero is a valid value.
    unsafe { std::mem::zeroed() }
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// One step of building the jail's root, prepared (with its C strings) before `fork`.
#[derive(Debug)]
enum Step {
    /// `mkdir(path)` inside the jail's tmpfs.
    Mkdir(CString),
    /// An empty file to bind a device node or file onto.
    Touch(CString),
    /// A symlink (`/lib -> usr/lib` on merged-/usr systems).
    Symlink { target: CString, link: CString },
    /// A bind mount, read-only unless `writable`.
    Bind {
        source: CString,
        dest: CString,
        writable: bool,
    },
    /// A fresh `/proc` (of the new PID namespace).
    Proc(CString),
}

/// A jail ready to be entered by the forked child: everything allocated up front, because
/// the child of a multi-threaded process may not allocate between `fork` and `exec`.
#[derive(Debug)]
pub struct PreparedJail {
    root: CString,
    steps: Vec<Step>,
    identity: Identity,
    tmpfs: CString,
    tmpfs_options: CString,
    proc_fs: CString,
    dot: CString,
    slash: CString,
}

impl Jail {
    /// Plans the jail's root: what of the host it shows.
    pub fn prepare(&self) -> io::Result<PreparedJail> {
        std::fs::create_dir_all(&self.root)?;
        let inside = |host: &Path| -> io::Result<CString> {
            cstr(&self.root.join(host.strip_prefix("/").unwrap_or(host)))
        };
        let mut steps = Vec::new();
        let mut made = std::collections::BTreeSet::new();
        let mut mkdirs = |steps: &mut Vec<Step>, dir: &Path| -> io::Result<()> {
            for ancestor in dir.ancestors().collect::<Vec<_>>().into_iter().rev() {
                if ancestor == Path::new("/") || !made.insert(ancestor.to_path_buf()) {
                    continue;
                }
                steps.push(Step::Mkdir(inside(ancestor)?));
            }
            Ok(())
        };
        // The program and its libraries: /usr, and /lib, /lib64, /bin as links (merged /usr)
        // or read-only binds (split /usr).
        mkdirs(&mut steps, Path::new("/usr"))?;
        steps.push(Step::Bind {
            source: cstr(Path::new("/usr"))?,
            dest: inside(Path::new("/usr"))?,
            writable: false,
        });
        for top in ["/lib", "/lib64", "/lib32", "/libx32", "/bin", "/sbin"] {
            let top = Path::new(top);
            match std::fs::symlink_metadata(top) {
                Ok(meta) if meta.file_type().is_symlink() => steps.push(Step::Symlink {
                    target: cstr(&std::fs::read_link(top)?)?,
                    link: inside(top)?,
                }),
                Ok(meta) if meta.is_dir() => {
                    mkdirs(&mut steps, top)?;
                    steps.push(Step::Bind {
                        source: cstr(top)?,
                        dest: inside(top)?,
                        writable: false,
                    });
                }
                _ => {}
            }
        }
        for path in &self.extra_ro {
            if let Some(parent) = path.parent() {
                mkdirs(&mut steps, parent)?;
            }
            steps.push(Step::Touch(inside(path)?));
            steps.push(Step::Bind {
                source: cstr(path)?,
                dest: inside(path)?,
                writable: false,
            });
        }
        mkdirs(&mut steps, Path::new("/etc"))?;
        let ld_cache = Path::new("/etc/ld.so.cache");
        if ld_cache.is_file() {
            steps.push(Step::Touch(inside(ld_cache)?));
            steps.push(Step::Bind {
                source: cstr(ld_cache)?,
                dest: inside(ld_cache)?,
                writable: false,
            });
        }
        mkdirs(&mut steps, Path::new("/dev"))?;
        let mut devices = vec![
            "/dev/null",
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
        ];
        if self.kvm {
            devices.push("/dev/kvm");
        }
        for device in devices {
            let device = Path::new(device);
            if device.exists() {
                steps.push(Step::Touch(inside(device)?));
                steps.push(Step::Bind {
                    source: cstr(device)?,
                    dest: inside(device)?,
                    writable: true,
                });
            }
        }
        if self.kvm {
            // Under KVM QEMU reads CPU and memory topology from sysfs.
            mkdirs(&mut steps, Path::new("/sys"))?;
            steps.push(Step::Bind {
                source: cstr(Path::new("/sys"))?,
                dest: inside(Path::new("/sys"))?,
                writable: false,
            });
        }
        mkdirs(&mut steps, Path::new("/proc"))?;
        steps.push(Step::Proc(inside(Path::new("/proc"))?));
        Ok(PreparedJail {
            root: cstr(&self.root)?,
            steps,
            identity: self.identity,
            tmpfs: CString::new("tmpfs").expect("no NUL"),
            tmpfs_options: CString::new("mode=0755,size=1m").expect("no NUL"),
            proc_fs: CString::new("proc").expect("no NUL"),
            dot: CString::new(".").expect("no NUL"),
            slash: CString::new("/").expect("no NUL"),
        })
    }
}

/// `Err(last OS error)` when `ret` is -1.
fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl PreparedJail {
    /// Enters the jail: new namespaces, the new root, then the unprivileged identity.
    ///
    /// # Safety
    /// Only in the child between `fork` and `exec` (it changes the calling process's root,
    /// namespaces and credentials). It does not allocate.
    pub unsafe fn enter(&self) -> io::Result<()> {
        let null = std::ptr::null::<libc::c_char>();
        // SAFETY: every pointer is a valid NUL-terminated string owned by `self`, or null
        // where the system call allows it; these calls are async-signal-safe.
        unsafe {
            check(libc::unshare(
                libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS,
            ))?;
            // Nothing mounted from here on propagates back to the host.
            check(libc::mount(
                null,
                self.slash.as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                self.tmpfs.as_ptr(),
                self.root.as_ptr(),
                self.tmpfs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                self.tmpfs_options.as_ptr().cast(),
            ))?;
            for step in &self.steps {
                match step {
                    Step::Mkdir(path) => check(libc::mkdir(path.as_ptr(), 0o755))?,
                    Step::Touch(path) => {
                        let fd = libc::open(
                            path.as_ptr(),
                            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                            0o644,
                        );
                        check(fd)?;
                        libc::close(fd);
                    }
                    Step::Symlink { target, link } => {
                        check(libc::symlink(target.as_ptr(), link.as_ptr()))?
                    }
                    Step::Bind {
                        source,
                        dest,
                        writable,
                    } => {
                        check(libc::mount(
                            source.as_ptr(),
                            dest.as_ptr(),
                            null,
                            libc::MS_BIND | libc::MS_REC,
                            std::ptr::null(),
                        ))?;
                        let mut flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_NOSUID;
                        if !writable {
                            flags |= libc::MS_RDONLY | libc::MS_NODEV;
                        }
                        check(libc::mount(
                            null,
                            dest.as_ptr(),
                            null,
                            flags,
                            std::ptr::null(),
                        ))?;
                    }
                    Step::Proc(path) => check(libc::mount(
                        self.proc_fs.as_ptr(),
                        path.as_ptr(),
                        self.proc_fs.as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        std::ptr::null(),
                    ))?,
                }
            }
            // Swap roots; the old one, stacked under the new, is detached at once.
            check(libc::chdir(self.root.as_ptr()))?;
            check(
                libc::syscall(libc::SYS_pivot_root, self.dot.as_ptr(), self.dot.as_ptr()) as i32,
            )?;
            check(libc::umount2(self.dot.as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(self.slash.as_ptr()))?;
            check(libc::mount(
                null,
                self.slash.as_ptr(),
                null,
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV,
                std::ptr::null(),
            ))?;
            let id = self.identity;
            let groups = [id.kvm_gid.unwrap_or(id.gid)];
            check(libc::setgroups(1, groups.as_ptr()))?;
            check(libc::setresgid(id.gid, id.gid, id.gid))?;
            check(libc::setresuid(id.uid, id.uid, id.uid))?;
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        }
        Ok(())
    }
}

/// Gives the calling thread's future children a PID namespace of their own: the next process
/// it forks (QEMU) is PID 1 there and sees no other process. Root only.
pub fn new_pid_namespace_for_children() -> io::Result<()> {
    // SAFETY: unshare with a plain flag; affects only this thread's later children.
    check(unsafe { libc::unshare(libc::CLONE_NEWPID) })
}

/// What a running VMM process is confined by, read from `/proc`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Its real user id.
    pub uid: u32,
    /// Its seccomp mode (0 none, 1 strict, 2 filter).
    pub seccomp: u32,
    /// Whether `no_new_privs` is set.
    pub no_new_privs: bool,
    /// Namespaces it does not share with the calling process (`mnt`, `net`, `pid`, ...).
    pub own_namespaces: Vec<String>,
}

impl Report {
    /// One line for `info`: `seccomp filter, uid 998, namespaces mnt net pid ipc uts`.
    pub fn summary(&self) -> String {
        let seccomp = match self.seccomp {
            2 => "seccomp filter",
            1 => "seccomp strict",
            _ => "no seccomp",
        };
        let namespaces = if self.own_namespaces.is_empty() {
            "the host's namespaces".to_string()
        } else {
            format!("own namespaces: {}", self.own_namespaces.join(" "))
        };
        format!(
            "{seccomp}, uid {}{}, {namespaces}",
            self.uid,
            if self.no_new_privs {
                ", no_new_privs"
            } else {
                ""
            }
        )
    }
}

/// Reads how process `pid` is confined.
pub fn inspect(pid: u32) -> io::Result<Report> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Option<&str> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim_start_matches(':').trim())
    };
    let uid = field("Uid")
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    let seccomp = field("Seccomp").and_then(|v| v.parse().ok()).unwrap_or(0);
    let no_new_privs = field("NoNewPrivs") == Some("1");
    let own_namespaces = ["mnt", "net", "pid", "ipc", "uts"]
        .into_iter()
        .filter(|ns| {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"));
            let ours = std::fs::read_link(format!("/proc/self/ns/{ns}"));
            matches!((theirs, ours), (Ok(a), Ok(b)) if a != b)
        })
        .map(str::to_string)
        .collect();
    Ok(Report {
        uid,
        seccomp,
        no_new_privs,
        own_namespaces,
    })
}

/// Whether users other than the owner and group may read `path` (a jailed QEMU reopens the
/// kernel and initramfs through `/proc/self/fd`, which checks the file's mode).
pub fn world_readable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    /// `OsStr` of a C string.
    fn os(c: &CString) -> &OsStr {
        OsStr::from_bytes(c.as_bytes())
    }

    #[test]
    fn jail_shows_usr_devices_and_proc_only() {
        let jail = Jail {
            root: std::env::temp_dir().join(format!("smolvm-jail-test-{}", std::process::id())),
            identity: Identity {
                uid: 1,
                gid: 1,
                kvm_gid: None,
            },
            user_name: "x".into(),
            extra_ro: vec![PathBuf::from("/opt/qemu/bin/qemu-system-x86_64")],
            kvm: false,
        };
        let prepared = jail.prepare().unwrap();
        let root = jail.root.display().to_string();
        let binds: Vec<String> = prepared
            .steps
            .iter()
            .filter_map(|s| match s {
                Step::Bind { source, .. } => Some(os(source).to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        assert!(binds.contains(&"/usr".to_string()), "{binds:?}");
        assert!(binds.contains(&"/dev/null".to_string()), "{binds:?}");
        assert!(binds.contains(&"/opt/qemu/bin/qemu-system-x86_64".to_string()));
        assert!(!binds
            .iter()
            .any(|b| b == "/dev/kvm" || b == "/sys" || b.starts_with("/root")));
        // Every destination is inside the jail's root.
        for step in &prepared.steps {
            if let Step::Bind { dest, .. } | Step::Mkdir(dest) | Step::Touch(dest) = step {
                assert!(os(dest).to_string_lossy().starts_with(&root), "{step:?}");
            }
        }
        std::fs::remove_dir_all(&jail.root).unwrap();
    }

    #[test]
    fn inspect_reads_this_process() {
        let report = inspect(std::process::id()).unwrap();
        // SAFETY: getuid has no preconditions.
        assert_eq!(report.uid, unsafe { libc::getuid() });
        assert!(report.own_namespaces.is_empty(), "{report:?}");
    }
}
