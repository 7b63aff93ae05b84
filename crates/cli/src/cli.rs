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

const EXIT_CODES: &str =
    "Exit codes: 0 success; `run` passes the command's own exit code through; \
1 error; 2 invalid input; 124 command timed out; 125 the sandbox could not be started.";

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
    /// Kill the command after this many seconds (default: no limit).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Set an environment variable (login shells see it), repeatable.
    #[arg(long = "env", short = 'e', value_name = "K=V")]
    pub env: Vec<String>,
    /// Sizing.
    #[command(flatten)]
    pub size: SizeArgs,
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
}
