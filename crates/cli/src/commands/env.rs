//! `smolvm env set|list|unset`.

use anyhow::Result;
use smolvm::SmolVm;

use crate::cli::EnvCommand;
use crate::output::print_json;

/// How a value is shown when values are masked.
fn mask(value: &str) -> String {
    if value.is_empty() {
        String::new()
    } else {
        "********".into()
    }
}

pub fn env(command: EnvCommand, json: bool) -> Result<i32> {
    match command {
        EnvCommand::Set {
            name,
            pairs,
            replace,
        } => {
            let vars = super::parse_env_pairs(&pairs)?;
            let keys = SmolVm::attach(&name)?.set_env_vars(&vars, !replace)?;
            if json {
                print_json(&serde_json::json!({ "name": name, "keys": keys }));
            } else {
                println!("{}", keys.join("\n"));
            }
        }
        EnvCommand::List { name, show_values } => {
            let vars = SmolVm::attach(&name)?.list_env_vars()?;
            let shown: std::collections::BTreeMap<&String, String> = vars
                .iter()
                .map(|(k, v)| (k, if show_values { v.clone() } else { mask(v) }))
                .collect();
            if json {
                print_json(
                    &serde_json::json!({ "name": name, "vars": shown, "masked": !show_values }),
                );
            } else {
                for (key, value) in shown {
                    println!("{key}={value}");
                }
            }
        }
        EnvCommand::Unset { name, keys } => {
            let removed = SmolVm::attach(&name)?.unset_env_vars(&keys)?;
            if json {
                let names: Vec<&String> = removed.keys().collect();
                print_json(&serde_json::json!({ "name": name, "removed": names }));
            } else {
                for key in removed.keys() {
                    println!("{key}");
                }
            }
        }
    }
    Ok(0)
}
