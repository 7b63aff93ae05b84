//! Command-line syntax.

use clap::{Args, Parser, Subcommand};

/// SmolVM: run untrusted code in disposable, hardware-isolated microVMs.
#[derive(Debug, Parser)]
#[command(name = "smolvm", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Print one JSON object ({"ok", "data", "error"}) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const EXIT_CODES: &str = "Exit codes: 0 success; `run` and `exec` pass the command's own exit \
code through; 1 error; 2 invalid input; 3 no such sandbox (or snapshot, image); 4 sandbox not \
running (stopped or paused; or running, for `rm` without --force); 124 command timed out; 125 the \
sandbox could not be started; 130 interrupted.";

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Install host packages (as root), build the guest kernel and images. Safe to re-run.
    Setup(SetupArgs),
    /// Check every prerequisite and say how to fix what is missing.
    Doctor,
    /// Boot a one-off sandbox, run a command line in it, print its output, delete it.
    Run(RunArgs),
    /// Measure boot, command round trip, memory, and environment operations against their floors.
    Bench(BenchArgs),
    /// Create and start a named sandbox that keeps running after this command exits.
    Create(CreateArgs),
    /// List sandboxes (running and paused ones; --all for every one).
    Ls(LsArgs),
    /// Show one sandbox.
    Info(NameArg),
    /// Start a stopped sandbox.
    Start(NameArg),
    /// Stop a sandbox (clean guest shutdown, forced after 5 s); its configuration and
    /// environment variables are kept.
    Stop(NameArg),
    /// Stop and start a sandbox.
    Restart(NameArg),
    /// Remove sandboxes. A running or paused sandbox is refused unless --force (which stops
    /// it first).
    Rm(RmArgs),
    /// Freeze a running sandbox's vCPUs; its memory, processes and files are kept. Commands
    /// are refused until `smolvm resume`.
    Pause(NameArg),
    /// Let a paused sandbox run again (its clock is stepped to the host's time).
    Resume(NameArg),
    /// Take, list, restore and remove snapshots of sandboxes (memory, devices and disk).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Run a command line in a running sandbox, streaming its output.
    Exec(ExecArgs),
    /// Manage a sandbox's environment variables (seen by login shells).
    #[command(subcommand)]
    Env(EnvCommand),
    /// Show a sandbox's guest console and supervisor log.
    Logs(LogsArgs),
    /// Build, list, inspect and remove guest images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Copy files or trees between this host and a sandbox: `cp LOCAL NAME:/path` or
    /// `cp NAME:/path LOCAL` (-r for directories).
    Cp(CpArgs),
    /// Open an interactive login shell in a sandbox (a terminal in the guest).
    Shell(NameArg),
}

/// `smolvm cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// Copy directories recursively.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Downloading a tree: replace the destination folder when it exists and is not empty
    /// (its old content is deleted, nothing is merged). Without it such a copy is refused.
    #[arg(long)]
    pub overwrite: bool,
    /// `LOCAL` or `NAME:/absolute/path`.
    pub source: String,
    /// `LOCAL` or `NAME:/absolute/path`.
    pub destination: String,
}

/// `smolvm snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a running (or paused) sandbox's memory, devices and disk; prints the snapshot id.
    /// The guest stops while it is taken and then carries on, processes and all.
    Create {
        /// Sandbox name (or id).
        name: String,
        /// The snapshot's id: 1-63 of a-z, 0-9 and '-', starting with a letter or digit
        /// (default: a generated `snap-xxxxxxxx`).
        #[arg(long, value_name = "ID")]
        snapshot_id: Option<String>,
        /// Leave the sandbox paused afterwards (`smolvm resume` lets it run again); a
        /// sandbox that was paused stays paused either way.
        #[arg(long)]
        keep_paused: bool,
    },
    /// List snapshots, oldest first.
    Ls {
        /// Also list the pre-booted templates that new sandboxes start from.
        #[arg(long)]
        templates: bool,
    },
    /// Remove snapshots (sandboxes restored from them keep working).
    Rm {
        /// Snapshot ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
    /// Make a new named sandbox from a snapshot and start it where the snapshot left off, as a
    /// distinct machine (its own name, hostname and disk); prints its name.
    Restore {
        /// Snapshot id (see `smolvm snapshot ls`).
        id: String,
        /// The new sandbox's name (default: a generated name such as `brave-otter-0412`).
        #[arg(long)]
        name: Option<String>,
    },
}

/// `smolvm image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build an image (offline, from Debian packages; about a minute). Kept until its inputs
    /// change: building it again is a no-op that says so.
    Build(ImageBuildArgs),
    /// List the built images.
    Ls,
    /// Show one image: kind, size, packages, when it was built and which sandboxes use it.
    Inspect {
        /// Image name.
        name: String,
    },
    /// Remove an image. Refused while a sandbox uses it, unless --force.
    Rm {
        /// Image name.
        name: String,
        /// Remove it even if sandboxes use it (running ones keep working; stopped ones on
        /// `minimal` or a custom initramfs can no longer start).
        #[arg(long, short = 'f')]
        force: bool,
    },
}

/// `smolvm image build`.
#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// What to build: `debian` (bookworm minbase + python3) or `minimal` (busybox initramfs).
    pub base: String,
    /// Extra Debian packages, comma-separated (e.g. `curl,git`).
    #[arg(long, value_delimiter = ',', value_name = "PKG,...")]
    pub packages: Vec<String>,
    /// Disk size the guest sees, in MiB (the file is sparse; default 1024).
    #[arg(long, value_name = "MIB")]
    pub size: Option<u64>,
    /// Image name (default: `debian`, or `debian-<packages>` with --packages).
    #[arg(long)]
    pub name: Option<String>,
    /// The guest agent binary to put in the image (default: found beside smolvm).
    #[arg(long)]
    pub agent: Option<std::path::PathBuf>,
}

/// A sandbox name or id.
#[derive(Debug, Args)]
pub struct NameArg {
    /// Sandbox name (or id).
    pub name: String,
}

/// `smolvm create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name: 1-63 of a-z, 0-9 and '-', starting with a letter or digit (default: a generated
    /// name such as `brave-otter-0412`). It is also the guest's hostname.
    #[arg(long)]
    pub name: Option<String>,
    /// Image to boot (see `smolvm image ls`; default: debian; `minimal` starts fastest).
    #[arg(long)]
    pub image: Option<String>,
    /// Sizing.
    #[command(flatten)]
    pub size: SizeArgs,
    /// Environment variable in place before the first command, repeatable.
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Boot from scratch instead of from the image's pre-booted template.
    #[arg(long)]
    pub cold: bool,
}

/// `smolvm ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Include stopped, crashed and failed sandboxes too.
    #[arg(long, short = 'a')]
    pub all: bool,
}

/// `smolvm rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Sandboxes to remove.
    #[arg(required_unless_present = "all")]
    pub names: Vec<String>,
    /// Stop running and paused sandboxes first instead of refusing.
    #[arg(long, short = 'f')]
    pub force: bool,
    /// Remove every sandbox.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
}

/// `smolvm exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Sandbox name (or id).
    pub name: String,
    /// Use a raw shell (`sh -c`): no profile, no managed variables.
    #[arg(long)]
    pub raw: bool,
    /// Kill the command's process group after this many seconds; 0 means no limit.
    /// Default: 30 s, as the SDK's run(); no limit with -i or -t.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Extra variable for this command only, repeatable.
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Keep stdin open and pass this terminal's stdin to the command.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Run the command on a terminal in the guest (with -i: an interactive session).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command line: words are joined with spaces and parsed by the guest shell.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `smolvm env ...`.
#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// Set variables (merged into the current ones unless --replace).
    Set {
        /// Sandbox name (or id).
        name: String,
        /// Variables as KEY=VALUE.
        #[arg(required = true, value_name = "K=V")]
        pairs: Vec<String>,
        /// Replace all variables instead of merging.
        #[arg(long)]
        replace: bool,
    },
    /// List the managed variables (values masked unless --show-values).
    List {
        /// Sandbox name (or id).
        name: String,
        /// Print the values instead of masking them.
        #[arg(long)]
        show_values: bool,
    },
    /// Remove variables; prints the ones that existed.
    Unset {
        /// Sandbox name (or id).
        name: String,
        /// Variable names.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

/// `smolvm logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Sandbox name (or id).
    pub name: String,
    /// Keep printing new lines until the sandbox stops.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last N lines of each log.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

/// `smolvm setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The guest agent binary to put in the images (default: found beside smolvm).
    #[arg(long)]
    pub agent: Option<std::path::PathBuf>,
}

/// Sandbox sizing shared by the commands that boot one.
#[derive(Debug, Args)]
pub struct SizeArgs {
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory: u32,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
}

/// `smolvm run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Use a raw shell (`sh -c`): no profile, no managed variables.
    #[arg(long)]
    pub raw: bool,
    /// Kill the command's process group after this many seconds; 0 means no limit.
    /// Default: 30 s, as the SDK's run().
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Set an environment variable (login shells see it), repeatable.
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Image to boot (see `smolvm image ls`; default: debian; `minimal` starts fastest).
    #[arg(long)]
    pub image: Option<String>,
    /// Sizing.
    #[command(flatten)]
    pub size: SizeArgs,
    /// Boot from scratch instead of from the image's pre-booted template.
    #[arg(long)]
    pub cold: bool,
    /// The command line: words are joined with spaces and parsed by the guest shell.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `smolvm bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Samples per measurement (at least 10 for medians and p95).
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Round trips per warm measurement.
    #[arg(long, default_value_t = 200)]
    pub round_trips: usize,
    /// Images whose cold start is compared (each against the boot floor, and each against
    /// the first one), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "minimal,debian")]
    pub images: Vec<String>,
    /// Also time a fresh build of a Debian image (about a minute; removed afterwards).
    #[arg(long)]
    pub build_image: bool,
    /// Size of the file moved by the upload/download throughput measurement (0 skips it).
    #[arg(long, value_name = "MIB", default_value_t = 300)]
    pub transfer_mib: u64,
}
