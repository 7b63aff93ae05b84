//! `smolvm doctor`.

use anyhow::Result;
use smolvm::DataDir;

use crate::output::print_json;

pub fn run(json: bool) -> Result<i32> {
    let checks = smolvm::setup::doctor(&DataDir::from_env());
    let all_ok = checks.iter().all(|c| c.ok);
    if json {
        print_json(&serde_json::json!({ "healthy": all_ok, "checks": checks }));
    } else {
        for check in &checks {
            println!(
                "{} {:<14} {}",
                if check.ok { "ok  " } else { "FAIL" },
                check.name,
                check.detail
            );
            if let Some(fix) = &check.fix {
                println!("     {:<14} fix: {fix}", "");
            }
        }
        println!(
            "{}",
            if all_ok {
                "All checks passed."
            } else {
                "Some checks failed; see the fixes above."
            }
        );
    }
    Ok(if all_ok { 0 } else { 1 })
}
