//! `smolvm logs`: the guest console, then the supervisor's log; `-f` follows both.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use smolvm::paths::VmPaths;
use smolvm::{sandbox, DataDir};

use crate::cli::LogsArgs;
use crate::output::print_json;

fn tail(text: &str, n: Option<usize>) -> String {
    match n {
        None => text.to_string(),
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let mut out = lines[lines.len().saturating_sub(n)..].join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            out
        }
    }
}

pub fn logs(args: LogsArgs, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let info = sandbox::find(&data, &args.name)?;
    let paths = VmPaths::new(data.vm_dir(&info.record.name));
    let files: [(&str, PathBuf); 2] = [
        ("console", paths.console_log()),
        ("supervisor", paths.supervisor_log()),
    ];
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    if json {
        print_json(&serde_json::json!({
            "name": info.record.name,
            "console": tail(&read(&files[0].1), args.tail),
            "supervisor": tail(&read(&files[1].1), args.tail),
        }));
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    let mut offsets = [0u64; 2];
    for (i, (label, path)) in files.iter().enumerate() {
        let text = read(path);
        offsets[i] = text.len() as u64;
        let shown = tail(&text, args.tail);
        if !shown.is_empty() {
            writeln!(out, "==> {label} <==")?;
            out.write_all(shown.as_bytes())?;
        }
    }
    out.flush()?;
    if !args.follow {
        return Ok(0);
    }
    // Follow until the sandbox stops or disappears (a paused one may resume).
    loop {
        std::thread::sleep(Duration::from_millis(200));
        for (i, (_, path)) in files.iter().enumerate() {
            let Ok(mut file) = std::fs::File::open(path) else {
                continue;
            };
            if file.seek(SeekFrom::Start(offsets[i])).is_ok() {
                let mut fresh = Vec::new();
                if file.read_to_end(&mut fresh).is_ok() && !fresh.is_empty() {
                    offsets[i] += fresh.len() as u64;
                    out.write_all(&fresh)?;
                    out.flush()?;
                }
            }
        }
        if sandbox::find(&data, &info.record.name)
            .map_or(true, |s| !super::sandbox::is_live(&s.state))
        {
            return Ok(0);
        }
    }
}
