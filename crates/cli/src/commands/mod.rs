//! One module per subcommand.

mod cp;
mod doctor;
mod env;
mod exec;
mod image;
mod logs;
mod run;
mod sandbox;
mod setup;
mod shell;
mod snapshot;
mod template;

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::cli::{Cli, Command};

/// Runs the chosen subcommand; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<i32> {
    let json = cli.json;
    match cli.command {
        Command::Setup(args) => setup::run(args, json),
        Command::Doctor => doctor::run(json),
        Command::Run(args) => run::run(args, json),
        Command::Bench(args) => crate::bench::run(args, json),
        Command::Create(args) => sandbox::create(args, json),
        Command::Ls(args) => sandbox::ls(args, json),
        Command::Info(args) => sandbox::info(args, json),
        Command::Start(args) => sandbox::start(args, json),
        Command::Stop(args) => sandbox::stop(args, json),
        Command::Restart(args) => sandbox::restart(args, json),
        Command::Rm(args) => sandbox::rm(args, json),
        Command::Pause(args) => snapshot::pause(args, json),
        Command::Resume(args) => snapshot::resume(args, json),
        Command::Snapshot(command) => snapshot::snapshot(command, json),
        Command::Exec(args) => exec::exec(args, json),
        Command::Env(command) => env::env(command, json),
        Command::Logs(args) => logs::logs(args, json),
        Command::Image(command) => image::image(command, json),
        Command::Cp(args) => cp::cp(args, json),
        Command::Shell(args) => shell::shell(&args.name),
    }
}

/// Parses `K=V` arguments into a map; the key is validated by the SDK later.
pub fn parse_env_pairs(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for pair in pairs {
        let Some((key, value)) = pair.split_once('=') else {
            bail!(smolvm::Error::InvalidConfig {
                field: "--env",
                reason: format!("{pair:?} is not KEY=VALUE (e.g. --env API_KEY=secret)"),
            });
        };
        vars.insert(key.to_string(), value.to_string());
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs_split_at_the_first_equals() {
        let vars = parse_env_pairs(&["A=1".into(), "B=x=y".into(), "C=".into()]).unwrap();
        assert_eq!(vars["B"], "x=y");
        assert_eq!(vars["C"], "");
        let err = parse_env_pairs(&["NOEQUALS".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("KEY=VALUE"), "{err}");
    }
}
