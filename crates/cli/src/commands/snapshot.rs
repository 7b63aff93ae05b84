//! `smolvm pause|resume` and `smolvm snapshot create|ls|rm|restore`.

use anyhow::Result;
use serde::Serialize;
use smolvm::snapshot::{self, validate_snapshot_id};
use smolvm::{DataDir, RestoreOptions, SandboxState, SmolVm, SnapshotMeta, SnapshotOptions};

use super::sandbox::{say, with_name};
use crate::cli::{NameArg, SnapshotCommand};
use crate::output::print_json;

/// `smolvm pause NAME`: a paused sandbox keeps its memory; pausing it again does nothing.
pub fn pause(args: NameArg, json: bool) -> Result<i32> {
    switch(&args, json, SandboxState::Paused, SmolVm::pause, "paused")
}

/// `smolvm resume NAME`: resuming a running sandbox does nothing.
pub fn resume(args: NameArg, json: bool) -> Result<i32> {
    switch(
        &args,
        json,
        SandboxState::Running,
        SmolVm::resume,
        "resumed",
    )
}

/// Brings sandbox `args.name` to `target` with `act`, saying whether it was already there.
fn switch(
    args: &NameArg,
    json: bool,
    target: SandboxState,
    act: fn(&SmolVm) -> smolvm::Result<()>,
    done: &str,
) -> Result<i32> {
    let vm = SmolVm::attach(&args.name)?;
    let already = vm.status() == target;
    act(&vm)?;
    let text = if already {
        format!("{} is already {target}", vm.vm_id())
    } else {
        format!("{} {done}", vm.vm_id())
    };
    say(json, vm.vm_id(), target, text);
    Ok(0)
}

/// `smolvm snapshot ...`.
pub fn snapshot(command: SnapshotCommand, json: bool) -> Result<i32> {
    match command {
        SnapshotCommand::Create {
            name,
            snapshot_id,
            keep_paused,
        } => create(&name, snapshot_id, keep_paused, json),
        SnapshotCommand::Ls { templates } => ls(templates, json),
        SnapshotCommand::Rm { ids } => rm(&ids, json),
        SnapshotCommand::Restore { id, name } => restore(&id, name, json),
    }
}

/// A size in MiB with one decimal, `-` for nothing.
fn mib(bytes: u64) -> String {
    if bytes == 0 {
        "-".into()
    } else {
        format!("{:.1}M", bytes as f64 / f64::from(1 << 20))
    }
}

fn create(name: &str, id: Option<String>, keep_paused: bool, json: bool) -> Result<i32> {
    // A bad id is refused before anything is touched.
    if let Some(id) = &id {
        validate_snapshot_id(id)?;
    }
    let vm = SmolVm::attach(name)?;
    // A paused sandbox stays paused whatever `keep_paused` says.
    let stays_paused = keep_paused || vm.status() == SandboxState::Paused;
    let meta = vm.snapshot(&SnapshotOptions { id, keep_paused })?;
    if json {
        print_json(&meta);
        return Ok(0);
    }
    // The id alone on stdout (for `id=$(smolvm snapshot create NAME)`), the details on stderr.
    println!("{}", meta.id);
    if let Some(s) = &meta.stats {
        eprintln!(
            "snapshot {} of {}: memory {}, disk {}, saved in {:.2} s (guest stopped {:.2} s){}",
            meta.id,
            meta.source_vm,
            mib(s.memory_bytes),
            mib(s.disk_bytes),
            s.save_ms as f64 / 1000.0,
            s.paused_ms as f64 / 1000.0,
            if stays_paused {
                format!("; {} stays paused", meta.source_vm)
            } else {
                String::new()
            }
        );
    }
    Ok(0)
}

/// A snapshot as `snapshot ls` shows it.
#[derive(Debug, Serialize)]
struct SnapshotView {
    #[serde(flatten)]
    meta: SnapshotMeta,
    /// `snapshot`, or `template` for a pre-booted template (listed with `--templates`).
    kind: &'static str,
}

fn ls(templates: bool, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let mut views: Vec<SnapshotView> = snapshot::list(&data)
        .into_iter()
        .map(|meta| SnapshotView {
            meta,
            kind: "snapshot",
        })
        .collect();
    if templates {
        views.extend(
            smolvm::template::list(&data)
                .into_iter()
                .map(|meta| SnapshotView {
                    meta,
                    kind: "template",
                }),
        );
    }
    if json {
        print_json(&views);
        return Ok(0);
    }
    println!(
        "{:<24} {:<8} {:<24} {:<10} {:>9} {:>8} {:>8}",
        "ID", "KIND", "SOURCE", "IMAGE", "CREATED", "MEMORY", "DISK"
    );
    for v in &views {
        let m = &v.meta;
        let (memory, disk) = m
            .stats
            .as_ref()
            .map_or((0, 0), |s| (s.memory_bytes, s.disk_bytes));
        println!(
            "{:<24} {:<8} {:<24} {:<10} {:>9} {:>8} {:>8}",
            m.id,
            v.kind,
            if v.kind == "template" {
                "-"
            } else {
                &m.source_vm
            },
            m.image,
            super::image::age(m.created_at),
            mib(memory),
            mib(disk)
        );
    }
    Ok(0)
}

/// Removes every snapshot in `ids`, or none if one of them does not exist.
fn rm(ids: &[String], json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    for id in ids {
        snapshot::find(&data, id)?;
    }
    let mut removed = Vec::new();
    for id in ids {
        removed.push(snapshot::remove(&data, id)?.id);
    }
    if json {
        print_json(&serde_json::json!({ "removed": removed }));
    } else {
        for id in removed {
            println!("{id}");
        }
    }
    Ok(0)
}

fn restore(id: &str, name: Option<String>, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    // An unknown id is named before a sandbox name is even considered.
    snapshot::find(&data, id)?;
    let vm = with_name(name.as_deref(), |name| {
        let options = RestoreOptions {
            name: Some(name),
            persistent: true,
        };
        SmolVm::restore_with(data.clone(), id, &options, None)
    })?;
    if json {
        print_json(&serde_json::json!({
            "name": vm.vm_id(),
            "state": SandboxState::Running,
            "snapshot": id,
        }));
    } else {
        println!("{}", vm.vm_id());
    }
    Ok(0)
}
