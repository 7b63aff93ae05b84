//! `smolvm setup`.

use anyhow::Result;
use smolvm::DataDir;

use crate::cli::SetupArgs;
use crate::output::print_json;
use crate::progress::Spinner;

pub fn run(args: SetupArgs, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let report = smolvm::setup::setup(&data, args.agent, &Spinner::new(json))?;
    if json {
        print_json(&report);
    } else if report.was_noop() {
        println!(
            "Nothing to do: host packages, kernel and images are up to date in {}.",
            data.root().display()
        );
    } else {
        println!(
            "SmolVM is set up in {}. Try: smolvm run -- 'echo hello from $(uname -n)'",
            data.root().display()
        );
    }
    Ok(0)
}
