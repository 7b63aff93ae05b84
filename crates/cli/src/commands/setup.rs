//! `smolvm setup`.

use anyhow::Result;
use serde::Serialize;
use smolvm::image;
use smolvm::setup::SetupReport;
use smolvm::DataDir;

use super::template::{self, TemplateStatus};
use crate::cli::SetupArgs;
use crate::output::print_json;
use crate::progress::Spinner;

/// What `setup --json` reports: the SDK's report and the images' templates.
#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    setup: SetupReport,
    templates: Vec<TemplateStatus>,
}

pub fn run(args: SetupArgs, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let spinner = Spinner::new(json);
    let report = smolvm::setup::setup(&data, args.agent, &spinner)?;
    // Without a template the first sandbox of each image boots from scratch: still works.
    let templates: Vec<TemplateStatus> = [image::MINIMAL, image::DEBIAN]
        .into_iter()
        .map(|name| template::ensure(&data, name, &spinner))
        .collect();
    if json {
        print_json(&Report {
            setup: report,
            templates,
        });
        return Ok(0);
    }
    let noop = report.was_noop() && templates.iter().all(|t| !t.built && t.error.is_none());
    for t in &templates {
        t.print();
    }
    if noop {
        println!(
            "Nothing to do: host packages, kernel, images and templates are up to date in {}.",
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
