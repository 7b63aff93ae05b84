//! [`TestEnv`]: a throw-away data directory whose sandboxes run on the fake backend.

use std::ffi::OsString;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use smolvm::image::{ImageMeta, KIND_INITRAMFS, MINIMAL};
use smolvm::Launcher;
use smolvm::{DataDir, SmolVm, VmConfig};

/// Boot arguments of [`TestEnv::config`]. Not the default ones, so that no sandbox of a test
/// tries to start from a pre-booted template (which needs snapshots, hence a real VM).
pub const FAKE_BOOT_ARGS: &str = "console=ttyS0 smolvm.testkit=1";

/// Finds `smolvm-fake-supervisor` beside the running program or one or two folders up (as
/// from `target/release/deps`). Integration tests of this crate pass
/// `env!("CARGO_BIN_EXE_smolvm-fake-supervisor")` instead.
pub fn find_fake_supervisor() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|d| d.join("smolvm-fake-supervisor"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no smolvm-fake-supervisor near {}; build smolvm-testkit",
                    exe.display()
                ),
            )
        })
}

/// A private temporary folder (0700) holding a SmolVM data directory that passes
/// [`VmConfig::validate`] for the `minimal` image (placeholder kernel and initramfs: the fake
/// backend boots neither), plus scratch folders that stand in for guest paths. Dropping it
/// deletes every sandbox still registered in it (stopping their supervisors) and the folder.
pub struct TestEnv {
    root: PathBuf,
    data: DataDir,
    launcher: Launcher,
}

impl TestEnv {
    /// An environment using `smolvm-fake-supervisor` and the agent it finds by itself (see
    /// [`crate::find_agent`]).
    pub fn new() -> io::Result<Self> {
        Self::with_launcher(Launcher::new(find_fake_supervisor()?, Vec::new()))
    }

    /// An environment whose supervisor is `supervisor` running `agent` (integration tests
    /// pass the `CARGO_BIN_EXE_` paths of this crate's binaries).
    pub fn with_binaries(
        supervisor: impl Into<PathBuf>,
        agent: impl Into<PathBuf>,
    ) -> io::Result<Self> {
        let agent: PathBuf = agent.into();
        let args = vec![OsString::from("--agent"), agent.into_os_string()];
        Self::with_launcher(Launcher::new(supervisor, args))
    }

    fn with_launcher(launcher: Launcher) -> io::Result<Self> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "smolvm-testkit-{}-{}-{:08x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            smolvm_sys::random::random_u64() as u32
        ));
        // Fails if the name is taken: the folder is ours alone.
        std::fs::DirBuilder::new().mode(0o700).create(&root)?;
        let env = Self {
            data: DataDir::at(root.join("data")),
            root,
            launcher,
        };
        env.populate()?;
        Ok(env)
    }

    /// The placeholder kernel and `minimal` image.
    fn populate(&self) -> io::Result<()> {
        let private = |dir: &Path| smolvm_sys::fs::create_dir_private(dir);
        private(&self.data.kernel_dir())?;
        std::fs::write(
            self.data.kernel(),
            b"placeholder: the fake backend boots no kernel\n",
        )?;
        let image = self.data.image_dir(MINIMAL);
        private(&image)?;
        let rootfs = b"placeholder: the fake backend unpacks no initramfs\n";
        std::fs::write(image.join("initramfs.cpio"), rootfs)?;
        let meta = ImageMeta {
            name: MINIMAL.into(),
            kind: KIND_INITRAMFS.into(),
            inputs_hash: "smolvm-testkit".into(),
            size_bytes: rootfs.len() as u64,
            base: None,
            packages: Vec::new(),
            built_at_unix: smolvm_sys::fs::unix_now(),
            build_ms: 0,
            tree_hash: None,
        };
        let json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
        std::fs::write(image.join("image.json"), json)?;
        private(&self.root.join("scratch"))
    }

    /// The temporary folder holding everything.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The data directory.
    pub fn data(&self) -> DataDir {
        self.data.clone()
    }

    /// How the sandboxes' supervisors are started.
    pub fn launcher(&self) -> Launcher {
        self.launcher.clone()
    }

    /// A fresh, empty folder `name` under the environment (created 0700), for files a test
    /// sends to or reads from its "guest" (which is this host).
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.root.join("scratch").join(name);
        smolvm_sys::fs::create_dir_private(&dir).expect("creating a scratch folder");
        dir
    }

    /// A configuration of the `minimal` image that starts no template (see
    /// [`FAKE_BOOT_ARGS`]); adjust its fields as needed.
    pub fn config(&self) -> VmConfig {
        VmConfig {
            image: Some(MINIMAL.into()),
            boot_args: Some(FAKE_BOOT_ARGS.into()),
            mem_size_mib: 64,
            ..VmConfig::default()
        }
    }

    /// An ephemeral sandbox of `config`, not started, owned by the handle.
    pub fn vm(&self, config: VmConfig) -> smolvm::Result<SmolVm> {
        let mut vm = SmolVm::with_launcher(config, self.data(), false, self.launcher())?;
        vm.set_cold(true);
        Ok(vm)
    }

    /// An ephemeral sandbox of [`TestEnv::config`], started.
    pub fn running_vm(&self) -> smolvm::Result<SmolVm> {
        let vm = self.vm(self.config())?;
        vm.start()?;
        Ok(vm)
    }

    /// A persistent sandbox named `name` (of [`TestEnv::config`]), not started.
    pub fn persistent(&self, name: &str) -> smolvm::Result<SmolVm> {
        let config = VmConfig {
            vm_id: Some(name.into()),
            ..self.config()
        };
        let mut vm = SmolVm::with_launcher(config, self.data(), true, self.launcher())?;
        vm.set_cold(true);
        Ok(vm)
    }

    /// A second handle on sandbox `name`, as another process would get with
    /// [`SmolVm::attach`]; starting it uses the fake supervisor too.
    pub fn attach(&self, name: &str) -> smolvm::Result<SmolVm> {
        let mut vm = SmolVm::attach_in(self.data(), name)?;
        vm.set_launcher(self.launcher());
        Ok(vm)
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // Persistent sandboxes outlive their handles: stop what a test left running.
        if let Ok(sandboxes) = smolvm::sandbox::list(&self.data) {
            for info in sandboxes {
                if matches!(info.state.as_str(), "running" | "paused") {
                    if let Ok(vm) = self.attach(&info.record.name) {
                        let _ = vm.delete();
                        continue;
                    }
                }
                let _ = smolvm::sandbox::purge(&self.data, &info);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
