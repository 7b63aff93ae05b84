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
//!   result of a running sandbox of each image (see [`crate::bench_snapshot`]);
//! - image build: a fresh Debian image build (`--build-image`), else the time recorded at the
//!   last build of `debian`;
//! - channel floor: bare echo round trips on the guest channel, timed by the supervisor, plus
//!   the guest's own cost of spawning and reaping the shell (timed by the agent);
//! - warm `run("true")`, and the environment operations, against that (on a VM of the default
//!   image started the default way, i.e. from its template);
//! - the host memory of that VM, idle, against the guest memory it touched.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;
use smolvm::config::DEFAULT_IMAGE;
use smolvm::image::MINIMAL;
use smolvm::{image, DataDir, RunOptions, SmolVm, VmConfig};

use crate::cli::BenchArgs;
use crate::output::print_json;

/// Median and 95th percentile of a sample, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stats {
    /// Median.
    pub median_ms: f64,
    /// 95th percentile (nearest rank).
    pub p95_ms: f64,
    /// Number of samples.
    pub n: usize,
}

/// Median and p95 of `samples` (durations).
pub fn stats(samples: &[Duration]) -> Stats {
    let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    let pick = |q: f64| {
        if ms.is_empty() {
            return f64::NAN;
        }
        let rank = ((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len());
        ms[rank - 1]
    };
    let median = if ms.is_empty() {
        f64::NAN
    } else if ms.len() % 2 == 1 {
        ms[ms.len() / 2]
    } else {
        (ms[ms.len() / 2 - 1] + ms[ms.len() / 2]) / 2.0
    };
    Stats {
        median_ms: median,
        p95_ms: pick(0.95),
        n: ms.len(),
    }
}

/// What a line must reach: an upper bound on its ratio to its floor, and on its median.
#[derive(Debug, Clone, Copy, Default)]
struct Target {
    ratio_at_most: Option<f64>,
    median_at_most_ms: Option<f64>,
}

impl Target {
    /// No target.
    const NONE: Target = Target {
        ratio_at_most: None,
        median_at_most_ms: None,
    };

    /// The ratio at most `ratio`.
    const fn ratio(ratio: f64) -> Self {
        Target {
            ratio_at_most: Some(ratio),
            median_at_most_ms: None,
        }
    }

    /// Whether `median_ms` and `ratio` reach the target (`None` without one).
    fn met(&self, median_ms: f64, ratio: f64) -> Option<bool> {
        if self.ratio_at_most.is_none() && self.median_at_most_ms.is_none() {
            return None;
        }
        Some(
            !matches!(self.ratio_at_most, Some(max) if ratio > max)
                && !matches!(self.median_at_most_ms, Some(max) if median_ms > max),
        )
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.ratio_at_most, self.median_at_most_ms) {
            (None, None) => write!(f, "-"),
            (Some(r), None) => write!(f, "<= {r:?}"),
            (None, Some(ms)) => write!(f, "median <= {ms} ms"),
            (Some(r), Some(ms)) => write!(f, "<= {r:?} and median <= {ms} ms"),
        }
    }
}

#[derive(Debug, Serialize)]
struct Line {
    name: String,
    value: Stats,
    floor_name: String,
    floor: Stats,
    ratio: f64,
    target: String,
    /// Whether the target is reached (`null` without a target).
    met: Option<bool>,
}

fn line(
    name: impl Into<String>,
    value: Stats,
    floor_name: impl Into<String>,
    floor: Stats,
    target: Target,
) -> Line {
    let ratio = value.median_ms / floor.median_ms;
    Line {
        name: name.into(),
        value,
        floor_name: floor_name.into(),
        floor,
        ratio,
        target: target.to_string(),
        met: target.met(value.median_ms, ratio),
    }
}

/// `(target ...)`, with whether it is met when there is one.
fn target_note(target: &str, met: Option<bool>) -> String {
    match met {
        Some(true) => format!("(target {target}: met)"),
        Some(false) => format!("(target {target}: MISSED)"),
        None => format!("(target {target})"),
    }
}

/// Cold start → first `run("true")` result on `image`: a full boot, even when the image has a
/// current template.
fn cold_start_once(data: &DataDir, image: &str) -> Result<Duration> {
    let start = Instant::now();
    let mut vm = SmolVm::with_data_dir(
        VmConfig {
            image: Some(image.to_string()),
            ..VmConfig::default()
        },
        data.clone(),
    )?;
    vm.set_cold(true);
    vm.start()?;
    let result = vm.run("true")?;
    let elapsed = start.elapsed();
    if !result.ok() {
        bail!("`true` failed in the guest ({image})");
    }
    Ok(elapsed)
}

/// The target of one image's cold start against another's: the Debian image may cost at most
/// half again the busybox initramfs's start.
fn comparison_target(image: &str, baseline: &str) -> Target {
    if image == image::DEBIAN && baseline == image::MINIMAL {
        Target::ratio(1.5)
    } else {
        Target::NONE
    }
}

/// The target of a start from a template (the issue's): a first result within 0.2 s, and
/// within a fifth of the cold start in the same run.
const TEMPLATE_TARGET: Target = Target {
    ratio_at_most: Some(0.2),
    median_at_most_ms: Some(200.0),
};

/// Seconds a Debian image build takes: measured now on a throwaway image (`fresh`), else as
/// recorded at the last build of `debian`.
fn image_build_secs(data: &DataDir, fresh: bool) -> Result<(f64, &'static str)> {
    if !fresh {
        let meta = image::find_image(data, image::DEBIAN)?;
        return Ok((
            meta.build_ms as f64 / 1000.0,
            "recorded at the last build of debian",
        ));
    }
    let agent = image::find_agent()?;
    let spec = image::debian::DebianSpec::new(
        Some(&format!("bench-build-{}", std::process::id())),
        &[],
        None,
    )?;
    let start = Instant::now();
    let built = image::debian::build(data, &spec, &agent, &image::NoProgress);
    let elapsed = start.elapsed().as_secs_f64();
    let _ = image::remove_image(data, &spec.name);
    built?;
    Ok((elapsed, "fresh build (packages from the download cache)"))
}

/// Resident memory (KiB) of `pid`, and of its mapping of guest RAM (`guest_mib` large).
fn rss_kib(pid: u32, guest_mib: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let total = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let guest_kib = u64::from(guest_mib) * 1024;
    let mut guest_rss = 0;
    let mut in_guest_ram = false;
    for l in smaps.lines() {
        if let Some(v) = l.strip_prefix("Size:") {
            in_guest_ram =
                v.trim().trim_end_matches("kB").trim().parse::<u64>().ok() == Some(guest_kib);
        } else if let (true, Some(v)) = (in_guest_ram, l.strip_prefix("Rss:")) {
            guest_rss += v
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    (total, guest_rss)
}

pub fn run(args: BenchArgs, json: bool) -> Result<i32> {
    if args.runs < 10 {
        bail!(smolvm::Error::InvalidConfig {
            field: "--runs",
            reason: "use at least 10 runs for a median and p95".into()
        });
    }
    let data = DataDir::from_env();
    let accel_name = smolvm::floor::accelerator();
    crate::bench_snapshot::remove_leftovers(&data);
    let say = |msg: &str| {
        if !json {
            eprintln!("{msg}");
        }
    };

    say(&format!("boot floor: {} runs ({accel_name})", args.runs));
    let mut floor = Vec::new();
    for _ in 0..args.runs {
        floor.push(smolvm::floor::boot_once(&data)?);
    }

    // The cold start on minimal, and on each compared image, interleaved run by run.
    let mut measured: Vec<String> = vec![MINIMAL.to_string()];
    for name in &args.images {
        if !measured.contains(name) {
            measured.push(name.clone());
        }
    }
    // The template start of each, interleaved with the cold starts; the templates are made
    // current first, so that no start is timed building one.
    say(&format!(
        "templates of {}: making sure they are current (not timed)",
        measured.join(", ")
    ));
    for name in &measured {
        crate::bench_snapshot::ensure_template(&data, name)?;
    }
    say(&format!(
        "cold start and template start -> first result: {} runs each of {}",
        args.runs,
        measured.join(", ")
    ));
    let mut cold_by_image: Vec<Vec<Duration>> = vec![Vec::new(); measured.len()];
    let mut template_by_image: Vec<Vec<Duration>> = vec![Vec::new(); measured.len()];
    for _ in 0..args.runs {
        for (at, name) in measured.iter().enumerate() {
            cold_by_image[at].push(cold_start_once(&data, name)?);
            template_by_image[at].push(crate::bench_snapshot::template_start_once(&data, name)?);
        }
    }
    let cold = cold_by_image[0].clone();
    let cold_of = |name: &str| {
        let at = measured.iter().position(|m| m == name).expect("measured");
        stats(&cold_by_image[at])
    };
    let build = if args.build_image {
        say("image build: a fresh Debian image (about a minute)");
        Some(image_build_secs(&data, true)?)
    } else {
        image_build_secs(&data, false).ok()
    };

    say(&format!(
        "warm round trips on {DEFAULT_IMAGE} (the default image, from its template): {} each",
        args.round_trips
    ));
    let vm = SmolVm::create(VmConfig::default())?;
    let echo_ns = vm.channel_bench(args.round_trips as u32, 100)?;
    let echo: Vec<Duration> = echo_ns.iter().map(|ns| Duration::from_nanos(*ns)).collect();
    let (mut warm, mut spawn_floor) = (Vec::new(), Vec::new());
    for _ in 0..args.round_trips {
        let start = Instant::now();
        let result = vm.run_with("true", &RunOptions::default())?;
        warm.push(start.elapsed());
        spawn_floor.push(result.guest_time);
    }
    let echo_stats = stats(&echo);
    let spawn_stats = stats(&spawn_floor);
    let exec_floor: Vec<Duration> = spawn_floor
        .iter()
        .map(|d| *d + Duration::from_secs_f64(echo_stats.median_ms / 1000.0))
        .collect();

    let (mut set, mut list, mut unset) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..args.round_trips {
        let vars: BTreeMap<String, String> =
            [(format!("BENCH_{}", i % 8), "value".to_string())].into();
        let start = Instant::now();
        vm.set_env_vars(&vars, true)?;
        set.push(start.elapsed());
        let start = Instant::now();
        vm.list_env_vars()?;
        list.push(start.elapsed());
        let start = Instant::now();
        vm.unset_env_vars(&[format!("BENCH_{}", i % 8)])?;
        unset.push(start.elapsed());
    }

    // Let the idle VM settle, then read the memory of its host processes.
    std::thread::sleep(Duration::from_millis(500));
    let (supervisor_pid, qemu_pid) = vm.host_pids()?;
    let (qemu_rss, guest_touched) = rss_kib(qemu_pid, vm.config().mem_size_mib);
    let (supervisor_rss, _) = rss_kib(supervisor_pid, 0);
    drop(vm);

    let warm_stats = stats(&warm);
    let floor_stats = stats(&floor);
    let mut image_lines = Vec::new();
    for name in &args.images {
        image_lines.push(line(
            format!("cold start [{name}]"),
            cold_of(name),
            "boot floor",
            floor_stats,
            Target::NONE,
        ));
    }
    if let Some(baseline) = args.images.first() {
        for name in args.images.iter().skip(1) {
            image_lines.push(line(
                format!("cold start [{name}]"),
                cold_of(name),
                format!("cold start [{baseline}]"),
                cold_of(baseline),
                comparison_target(name, baseline),
            ));
        }
    }
    let lines = vec![
        line(
            format!("cold start -> first result [{MINIMAL}]"),
            stats(&cold),
            "boot floor",
            floor_stats,
            Target::ratio(1.3),
        ),
        line(
            "warm run(\"true\")",
            warm_stats,
            "channel echo + guest spawn",
            stats(&exec_floor),
            Target::ratio(2.0),
        ),
        line(
            "env set (merge)",
            stats(&set),
            "warm run(\"true\")",
            warm_stats,
            Target::ratio(1.2),
        ),
        line(
            "env list",
            stats(&list),
            "warm run(\"true\")",
            warm_stats,
            Target::ratio(1.2),
        ),
        line(
            "env unset",
            stats(&unset),
            "warm run(\"true\")",
            warm_stats,
            Target::ratio(1.2),
        ),
    ];
    let host_kib = qemu_rss + supervisor_rss;
    let overhead_mib = (host_kib.saturating_sub(guest_touched)) as f64 / 1024.0;
    let memory = serde_json::json!({
        "host_rss_mib": host_kib as f64 / 1024.0,
        "qemu_rss_mib": qemu_rss as f64 / 1024.0,
        "supervisor_rss_mib": supervisor_rss as f64 / 1024.0,
        "guest_touched_mib": guest_touched as f64 / 1024.0,
        "overhead_mib": overhead_mib,
        "ratio": host_kib as f64 / guest_touched.max(1) as f64,
        "target": "overhead <= 30 MiB",
    });

    // Snapshots of a running sandbox of each image, and restores of them.
    say(&format!(
        "snapshot save and restore -> first result: {} rounds each of {}",
        args.runs,
        measured.join(", ")
    ));
    let mut saves = Vec::new();
    for (at, name) in measured.iter().enumerate() {
        saves.push(crate::bench_snapshot::run(&data, name, at, args.runs)?);
    }
    let mut snapshot_lines = Vec::new();
    for (at, name) in measured.iter().enumerate() {
        let template = stats(&template_by_image[at]);
        snapshot_lines.push(line(
            format!("template start -> first result [{name}]"),
            template,
            format!("cold start [{name}]"),
            cold_of(name),
            TEMPLATE_TARGET,
        ));
        snapshot_lines.push(line(
            format!("template start -> first result [{name}]"),
            template,
            "boot floor",
            floor_stats,
            Target::NONE,
        ));
    }
    for save in &saves {
        snapshot_lines.push(line(
            format!("restore -> first result [{}]", save.image),
            save.restore,
            format!("cold start [{}]", save.image),
            cold_of(&save.image),
            Target::NONE,
        ));
    }

    say(&format!(
        "confinement: template start and warm run(\"true\") on {DEFAULT_IMAGE}, confined and with SMOLVM_UNCONFINED=1"
    ));
    let starts = crate::bench_confine::template_starts(&data, DEFAULT_IMAGE, args.runs)?;
    let warm_pair = crate::bench_confine::warm_runs(&data, DEFAULT_IMAGE, args.round_trips)?;
    for (name, pair) in [
        (
            format!("template start -> first result [{DEFAULT_IMAGE}], confined"),
            &starts,
        ),
        ("warm run(\"true\"), confined".to_string(), &warm_pair),
    ] {
        snapshot_lines.push(line(
            name,
            stats(&pair.confined),
            "the same unconfined (SMOLVM_UNCONFINED=1)",
            stats(&pair.unconfined),
            Target::ratio(1.05),
        ));
    }

    let transfer = if args.transfer_mib > 0 {
        if !json {
            eprintln!("file transfer: {} MiB up and down", args.transfer_mib);
        }
        Some(crate::bench_files::run(args.transfer_mib)?)
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
            "channel_echo": echo_stats,
            "guest_spawn": spawn_stats,
            "memory": memory,
        }));
        return Ok(0);
    }
    println!(
        "accelerator: {accel_name}; {} runs of each start and snapshot, {} warm round trips on {DEFAULT_IMAGE}",
        args.runs, args.round_trips
    );
    println!(
        "channel echo (100 B): median {:.3} ms; guest spawn+reap of sh: median {:.3} ms",
        echo_stats.median_ms, spawn_stats.median_ms
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
        "idle VM host RSS {:.1} MiB (QEMU {:.1} + supervisor {:.1}) | guest-touched RAM {:.1} MiB | overhead {:.1} MiB | ratio {:.2} (target overhead <= 30 MiB)",
        host_kib as f64 / 1024.0,
        qemu_rss as f64 / 1024.0,
        supervisor_rss as f64 / 1024.0,
        guest_touched as f64 / 1024.0,
        overhead_mib,
        host_kib as f64 / guest_touched.max(1) as f64
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95_use_nearest_rank() {
        let samples: Vec<Duration> = (1..=20).map(Duration::from_millis).collect();
        let s = stats(&samples);
        assert_eq!(s.median_ms, 10.5);
        assert_eq!(s.p95_ms, 19.0);
        assert_eq!(stats(&[Duration::from_millis(3)]).p95_ms, 3.0);
        assert!(stats(&[]).median_ms.is_nan());
    }

    #[test]
    fn targets_bound_the_ratio_and_the_median() {
        assert_eq!(Target::NONE.to_string(), "-");
        assert_eq!(Target::NONE.met(1e9, 1e9), None);
        assert_eq!(Target::ratio(2.0).to_string(), "<= 2.0");
        assert_eq!(Target::ratio(1.3).met(500.0, 1.3), Some(true));
        assert_eq!(Target::ratio(1.3).met(500.0, 1.31), Some(false));
        assert_eq!(TEMPLATE_TARGET.to_string(), "<= 0.2 and median <= 200 ms");
        assert_eq!(TEMPLATE_TARGET.met(150.0, 0.1), Some(true));
        assert_eq!(TEMPLATE_TARGET.met(250.0, 0.1), Some(false));
        assert_eq!(TEMPLATE_TARGET.met(150.0, 0.3), Some(false));
        let l = line(
            "x",
            stats(&[Duration::from_millis(300)]),
            "y",
            stats(&[Duration::from_millis(1000)]),
            TEMPLATE_TARGET,
        );
        assert_eq!(l.met, Some(false));
        assert!(target_note(&l.target, l.met).contains("MISSED"));
    }
}
