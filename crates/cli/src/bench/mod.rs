//! `smolvm bench`: each figure next to the floor it cannot beat, measured in the same run.
//!
//! - boot floor: QEMU with our kernel and devices, and an `/init` that resets at once;
//! - cold start: a VM started with `set_cold(true)` (a full boot, no template) + `run("true")`,
//!   i.e. what a user waits for a first result without a template: on `minimal` against the
//!   boot floor (an initramfs too, so the ratio is our stack's own overhead), and on each image
//!   compared (`--images`, interleaved run by run so that host noise hits them alike) against
//!   the floor and against the first of them;
//! - template start: the default start (from the image's pre-booted template, made current
//!   before timing) + `run("true")`, interleaved with the cold starts, against the cold start
//!   of the same image and the boot floor; snapshot save (times and sizes) and restore → first
//!   result of a running sandbox of each image (see [`snapshot`]);
//! - image build: a fresh Debian image build (`--build-image`), else the time recorded at the
//!   last build of `debian`;
//! - channel floor: bare echo round trips on the guest channel, timed by the supervisor, plus
//!   the guest's own cost of spawning and reaping the shell (timed by the agent);
//! - warm `run("true")`, and the environment operations, against that (on a VM of the default
//!   image started the default way, i.e. from its template);
//! - the host memory of that VM, idle, against the guest memory it touched;
//! - confinement: template start and warm `run("true")` confined against the same unconfined
//!   (see [`confine`]);
//! - file transfer: upload and download throughput against the raw channel's (see [`files`]).
//!
//! One module per measurement family ([`boot`], [`build`], [`exec`], [`memory`],
//! [`snapshot`], [`confine`], [`files`]), each measuring and making its own [`stats::Line`]s
//! with their targets; they share [`mod@stats`] and [`template`] and never each other. This
//! module only decides what runs in which order (the same as always, so that figures stay
//! comparable from run to run) and prints the table or the JSON.

mod boot;
mod build;
mod confine;
mod exec;
mod files;
mod memory;
mod snapshot;
mod stats;
mod template;

use anyhow::{bail, Result};
use smolvm::config::DEFAULT_IMAGE;
use smolvm::{DataDir, SmolVm, VmConfig};

use crate::cli::BenchArgs;
use crate::output::print_json;
use stats::{stats, target_note};

/// `smolvm bench`: measures every family, in a fixed order, then prints the table (or the
/// JSON with `--json`); progress goes to stderr, unless the output is JSON.
pub fn run(args: BenchArgs, json: bool) -> Result<i32> {
    if args.runs < 10 {
        bail!(smolvm::Error::InvalidConfig {
            field: "--runs",
            reason: "use at least 10 runs for a median and p95".into()
        });
    }
    let data = DataDir::from_env();
    let accel_name = smolvm::floor::accelerator();
    snapshot::remove_leftovers(&data);
    let say = |msg: &str| {
        if !json {
            eprintln!("{msg}");
        }
    };

    say(&format!("boot floor: {} runs ({accel_name})", args.runs));
    let floor = boot::floor(&data, args.runs)?;

    // The cold start on minimal, and on each compared image, interleaved run by run.
    let measured = boot::measured_images(&args.images);
    // The template start of each, interleaved with the cold starts; the templates are made
    // current first, so that no start is timed building one.
    say(&format!(
        "templates of {}: making sure they are current (not timed)",
        measured.join(", ")
    ));
    for name in &measured {
        template::ensure_template(&data, name)?;
    }
    say(&format!(
        "cold start and template start -> first result: {} runs each of {}",
        args.runs,
        measured.join(", ")
    ));
    let starts = boot::Starts::measure(&data, &measured, args.runs)?;
    let build = if args.build_image {
        say("image build: a fresh Debian image (about a minute)");
        Some(build::image_build_secs(&data, true)?)
    } else {
        build::image_build_secs(&data, false).ok()
    };

    say(&format!(
        "warm round trips on {DEFAULT_IMAGE} (the default image, from its template): {} each",
        args.round_trips
    ));
    let vm = SmolVm::create(VmConfig::default())?;
    let warm = exec::measure(&vm, args.round_trips)?;
    let memory = memory::measure(&vm)?;
    drop(vm);

    let floor_stats = stats(&floor);
    let image_lines = boot::image_lines(&args.images, &starts, floor_stats);
    let mut lines = vec![boot::cold_line(&starts, floor_stats)];
    lines.extend(warm.lines());

    // Snapshots of a running sandbox of each image, and restores of them.
    say(&format!(
        "snapshot save and restore -> first result: {} rounds each of {}",
        args.runs,
        measured.join(", ")
    ));
    let mut saves = Vec::new();
    for (at, name) in measured.iter().enumerate() {
        saves.push(snapshot::run(&data, name, at, args.runs)?);
    }
    let mut snapshot_lines = Vec::new();
    for name in &measured {
        snapshot_lines.extend(snapshot::template_lines(
            name,
            starts.template_of(name),
            starts.cold_of(name),
            floor_stats,
        ));
    }
    for save in &saves {
        snapshot_lines.push(snapshot::restore_line(save, starts.cold_of(&save.image)));
    }

    say(&format!(
        "confinement: template start and warm run(\"true\") on {DEFAULT_IMAGE}, confined and with SMOLVM_UNCONFINED=1"
    ));
    snapshot_lines.extend(confine::lines(
        &data,
        DEFAULT_IMAGE,
        args.runs,
        args.round_trips,
    )?);

    let transfer = if args.transfer_mib > 0 {
        say(&format!(
            "file transfer: {} MiB up and down",
            args.transfer_mib
        ));
        Some(files::run(args.transfer_mib)?)
    } else {
        None
    };
    if json {
        print_json(&serde_json::json!({
            "transfer": transfer,
            "accel": accel_name,
            "warm_image": DEFAULT_IMAGE,
            "lines": lines,
            "images": image_lines,
            "snapshot_lines": snapshot_lines,
            "snapshot_saves": saves,
            "image_build": build.map(|(secs, how)| serde_json::json!({ "secs": secs, "how": how })),
            "channel_echo": warm.echo,
            "guest_spawn": warm.spawn,
            "memory": memory.json(),
        }));
        return Ok(0);
    }
    println!(
        "accelerator: {accel_name}; {} runs of each start and snapshot, {} warm round trips on {DEFAULT_IMAGE}",
        args.runs, args.round_trips
    );
    println!(
        "channel echo ({} B): median {:.3} ms; guest spawn+reap of sh: median {:.3} ms",
        exec::ECHO_SIZE,
        warm.echo.median_ms,
        warm.spawn.median_ms
    );
    for l in lines.iter().chain(&image_lines).chain(&snapshot_lines) {
        println!(
            "{:<42} median {:>9.3} ms  p95 {:>9.3} ms | {:<26} median {:>9.3} ms | ratio {:.2} {}",
            l.name,
            l.value.median_ms,
            l.value.p95_ms,
            l.floor_name,
            l.floor.median_ms,
            l.ratio,
            target_note(&l.target, l.met)
        );
    }
    const MIB: f64 = (1 << 20) as f64;
    for s in &saves {
        println!(
            "snapshot save [{}]: median {:.0} ms (p95 {:.0} ms) by the supervisor, {:.0} ms (p95 {:.0} ms) for the caller | guest paused {:.0} ms | memory {:.1} MiB compressed of {:.1} MiB raw | disk overlay {:.1} MiB",
            s.image,
            s.save.median_ms,
            s.save.p95_ms,
            s.wall.median_ms,
            s.wall.p95_ms,
            s.paused.median_ms,
            s.memory_bytes as f64 / MIB,
            s.raw_bytes as f64 / MIB,
            s.disk_bytes as f64 / MIB
        );
    }
    if let Some((secs, how)) = build {
        println!("image build (debian): {secs:.1} s ({how})");
    }
    println!(
        "idle VM host RSS {:.1} MiB (QEMU {:.1} + supervisor {:.1}) | guest-touched RAM {:.1} MiB | overhead {:.1} MiB | ratio {:.2} (target {})",
        memory.host_kib() as f64 / 1024.0,
        memory.qemu_rss as f64 / 1024.0,
        memory.supervisor_rss as f64 / 1024.0,
        memory.guest_touched as f64 / 1024.0,
        memory.overhead_mib(),
        memory.ratio(),
        memory::TARGET
    );
    if let Some(t) = transfer {
        for (name, value) in [
            ("upload_file", t.upload_mib_s),
            ("download_file", t.download_mib_s),
        ] {
            println!(
                "{name} {} MiB: {value:.1} MiB/s | raw channel {:.1} MiB/s | ratio {:.2} (target >= 0.7)",
                t.file_mib,
                t.channel_mib_s,
                value / t.channel_mib_s
            );
        }
    }
    Ok(0)
}
