//! Snapshot part of `smolvm bench`: starts from a pre-booted template, snapshot saves and
//! restores, measured in the same run as the cold starts they are compared with.
//!
//! - template start: `SmolVm::start` of an image whose template is current (made sure of, and
//!   built if needed, before anything is timed) → first `run("true")` result; each start is
//!   checked to have restored the template rather than fallen back to a cold boot (timed by
//!   [`super::template`], interleaved with the cold starts by [`super::boot`]; this module
//!   sets them against the cold start and the floor);
//! - snapshot save: `SmolVm::snapshot` of a running sandbox, as the supervisor times it
//!   (`save_ms`, `paused_ms`) and as the caller waits for it, with the sizes it wrote;
//! - restore: `SmolVm::restore_with` of one of those snapshots → first `run("true")` result,
//!   with no other VM running.
//!
//! Every VM is deleted and every snapshot removed, also when a round fails. Snapshots are
//! named `bench-<pid>-...`, so that those of a bench that was killed are removed by the next.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use smolvm::protocol::SnapshotStats;
use smolvm::{DataDir, RestoreOptions, SmolVm, SnapshotOptions};

use super::stats::{line, median_u64, stats, Line, Stats, Target};
use super::template::image_config;

/// Prefix of the ids of the snapshots the bench takes.
const ID_PREFIX: &str = "bench-";

/// Snapshot saves and restores of one image, over the bench's rounds.
#[derive(Debug, Clone, Serialize)]
pub(super) struct SnapshotBench {
    /// The image of the snapshotted sandbox.
    pub image: String,
    /// `save_ms` as the supervisor measured it (the whole snapshot).
    pub save: Stats,
    /// The time `SmolVm::snapshot` took, as its caller waits for it.
    pub wall: Stats,
    /// How long the guest was stopped.
    pub paused: Stats,
    /// Compressed memory file, bytes (median).
    pub memory_bytes: u64,
    /// Migration stream before compression, bytes (median).
    pub raw_bytes: u64,
    /// Copied disk overlay, bytes (median; 0 without a disk).
    pub disk_bytes: u64,
    /// Restore → first `run("true")` result.
    pub restore: Stats,
}

/// Removes a snapshot when dropped, unless removed (with its error reported) before.
struct SnapshotGuard<'a> {
    data: &'a DataDir,
    id: String,
    armed: bool,
}

impl<'a> SnapshotGuard<'a> {
    fn new(data: &'a DataDir, id: String) -> Self {
        Self {
            data,
            id,
            armed: true,
        }
    }

    fn remove(mut self) -> Result<()> {
        self.armed = false;
        smolvm::snapshot::remove(self.data, &self.id)
            .with_context(|| format!("removing snapshot {}", self.id))?;
        Ok(())
    }
}

impl Drop for SnapshotGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            // The snapshot may never have been written; then there is nothing to remove.
            let _ = smolvm::snapshot::remove(self.data, &self.id);
        }
    }
}

/// Takes `rounds` snapshots of a running sandbox of `image` (each removed afterwards but the
/// first), then restores that one `rounds` times, the source gone.
pub(super) fn run(
    data: &DataDir,
    image: &str,
    index: usize,
    rounds: usize,
) -> Result<SnapshotBench> {
    let pid = std::process::id();
    let source = SmolVm::with_data_dir(image_config(image), data.clone())?;
    source.start()?;
    let warm = source.run("true")?;
    if !warm.ok() {
        bail!("`true` failed in the guest ({image}, snapshot source)");
    }
    let (mut wall, mut saved): (Vec<Duration>, Vec<SnapshotStats>) = (Vec::new(), Vec::new());
    let mut kept: Option<SnapshotGuard> = None;
    for round in 0..rounds {
        let guard = SnapshotGuard::new(data, format!("{ID_PREFIX}{pid}-{index}-{round}"));
        let options = SnapshotOptions {
            id: Some(guard.id.clone()),
            ..SnapshotOptions::default()
        };
        let start = Instant::now();
        let meta = source.snapshot(&options)?;
        wall.push(start.elapsed());
        saved.push(
            meta.stats
                .with_context(|| format!("snapshot {} has no statistics", guard.id))?,
        );
        if kept.is_none() {
            kept = Some(guard);
        } else {
            guard.remove()?;
        }
    }
    source.delete()?;

    let kept = kept.context("no snapshot was taken (0 rounds)")?;
    let mut restore = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let vm = SmolVm::restore_with(data.clone(), &kept.id, &RestoreOptions::default(), None)?;
        let result = vm.run("true")?;
        restore.push(start.elapsed());
        if !result.ok() {
            bail!("`true` failed in the guest ({image}, restored)");
        }
        vm.delete()?;
    }
    kept.remove()?;

    let ms = |f: fn(&SnapshotStats) -> u64| -> Vec<Duration> {
        saved.iter().map(|s| Duration::from_millis(f(s))).collect()
    };
    let bytes = |f: fn(&SnapshotStats) -> u64| median_u64(saved.iter().map(f).collect());
    Ok(SnapshotBench {
        image: image.to_string(),
        save: stats(&ms(|s| s.save_ms)),
        wall: stats(&wall),
        paused: stats(&ms(|s| s.paused_ms)),
        memory_bytes: bytes(|s| s.memory_bytes),
        raw_bytes: bytes(|s| s.raw_bytes),
        disk_bytes: bytes(|s| s.disk_bytes),
        restore: stats(&restore),
    })
}

/// Removes the snapshots of benches that are no longer running (killed before they cleaned
/// up).
pub(super) fn remove_leftovers(data: &DataDir) {
    for meta in smolvm::snapshot::list(data) {
        let owner = meta
            .id
            .strip_prefix(ID_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if owner.is_some_and(|pid| !smolvm_sys::process::pid_alive(pid)) {
            let _ = smolvm::snapshot::remove(data, &meta.id);
        }
    }
}

/// The target of a start from a template (the issue's): a first result within 0.2 s, and
/// within a fifth of the cold start in the same run.
const TEMPLATE_TARGET: Target = Target::ratio_and_median(0.2, 200.0);

/// The template start of `image` against its cold start (with the target) and against the
/// boot floor.
pub(super) fn template_lines(image: &str, template: Stats, cold: Stats, floor: Stats) -> [Line; 2] {
    [
        line(
            format!("template start -> first result [{image}]"),
            template,
            format!("cold start [{image}]"),
            cold,
            TEMPLATE_TARGET,
        ),
        line(
            format!("template start -> first result [{image}]"),
            template,
            "boot floor",
            floor,
            Target::NONE,
        ),
    ]
}

/// The restore of `save`'s snapshot against the cold start (`cold`) of its image.
pub(super) fn restore_line(save: &SnapshotBench, cold: Stats) -> Line {
    line(
        format!("restore -> first result [{}]", save.image),
        save.restore,
        format!("cold start [{}]", save.image),
        cold,
        Target::NONE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_target_bounds_the_ratio_and_the_median() {
        assert_eq!(TEMPLATE_TARGET.to_string(), "<= 0.2 and median <= 200 ms");
        assert_eq!(TEMPLATE_TARGET.met(150.0, 0.1), Some(true));
        assert_eq!(TEMPLATE_TARGET.met(250.0, 0.1), Some(false));
        assert_eq!(TEMPLATE_TARGET.met(150.0, 0.3), Some(false));
    }
}
