//! `smolvm`: set up the host, run commands in disposable microVMs, benchmark them.

#![forbid(unsafe_code)]

mod bench;
mod cli;
mod commands;
mod output;
mod progress;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SMOLVM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let json = cli.json;
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(err) => output::report_error(json, &err),
    };
    std::process::exit(code);
}
