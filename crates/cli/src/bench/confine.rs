//! What confining QEMU costs: template start and warm `run("true")` with the VMM confined
//! (seccomp; as root also its own user and namespaces) against the same with
//! `SMOLVM_UNCONFINED=1`, interleaved run by run in one process.

use std::time::{Duration, Instant};

use anyhow::Result;
use smolvm::{DataDir, RunOptions, SmolVm, VmConfig};

use super::stats::{line, stats, Line, Target};
use super::template::template_start_once;

/// Template start → first result and warm `run("true")` on `image`, each confined against
/// the same unconfined: `runs` template starts and `round_trips` warm runs of each kind.
pub(super) fn lines(
    data: &DataDir,
    image: &str,
    runs: usize,
    round_trips: usize,
) -> Result<Vec<Line>> {
    let starts = template_starts(data, image, runs)?;
    let warm_pair = warm_runs(data, image, round_trips)?;
    let mut lines = Vec::new();
    for (name, pair) in [
        (
            format!("template start -> first result [{image}], confined"),
            &starts,
        ),
        ("warm run(\"true\"), confined".to_string(), &warm_pair),
    ] {
        lines.push(line(
            name,
            stats(&pair.confined),
            "the same unconfined (SMOLVM_UNCONFINED=1)",
            stats(&pair.unconfined),
            Target::ratio(1.05),
        ));
    }
    Ok(lines)
}

/// Samples of one measurement, confined and not.
struct Pair {
    /// With the confinement `smolvm` uses.
    confined: Vec<Duration>,
    /// With `SMOLVM_UNCONFINED=1`.
    unconfined: Vec<Duration>,
}

/// Sets or clears `SMOLVM_UNCONFINED` for the supervisors started next (they inherit this
/// process's environment). The benchmark starts VMs from one thread only.
fn unconfined(on: bool) {
    if on {
        std::env::set_var("SMOLVM_UNCONFINED", "1");
    } else {
        std::env::remove_var("SMOLVM_UNCONFINED");
    }
}

/// Template starts of `image`, `runs` of each kind, interleaved.
fn template_starts(data: &DataDir, image: &str, runs: usize) -> Result<Pair> {
    let mut pair = Pair {
        confined: Vec::new(),
        unconfined: Vec::new(),
    };
    for _ in 0..runs {
        for off in [false, true] {
            unconfined(off);
            let sample = template_start_once(data, image);
            unconfined(false);
            let sample = sample?;
            if off {
                pair.unconfined.push(sample);
            } else {
                pair.confined.push(sample);
            }
        }
    }
    Ok(pair)
}

/// Warm `run("true")` round trips on two VMs of `image`, one of each kind, in alternating
/// batches of ten.
fn warm_runs(data: &DataDir, image: &str, round_trips: usize) -> Result<Pair> {
    let config = || VmConfig {
        image: Some(image.to_string()),
        ..VmConfig::default()
    };
    let confined = SmolVm::with_data_dir(config(), data.clone())?;
    confined.start()?;
    unconfined(true);
    let free = SmolVm::with_data_dir(config(), data.clone()).and_then(|vm| vm.start().map(|_| vm));
    unconfined(false);
    let free = free?;
    let mut pair = Pair {
        confined: Vec::new(),
        unconfined: Vec::new(),
    };
    let options = RunOptions::default();
    for batch in 0..round_trips.div_ceil(10) {
        for (vm, samples) in [
            (&confined, &mut pair.confined),
            (&free, &mut pair.unconfined),
        ] {
            for _ in 0..10.min(round_trips - batch * 10) {
                let start = Instant::now();
                vm.run_with("true", &options)?;
                samples.push(start.elapsed());
            }
        }
    }
    Ok(pair)
}
