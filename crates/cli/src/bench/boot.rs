//! Booting: the boot floor (bare QEMU with our kernel and devices and an `/init` that resets at
//! once), and the cold start → first result of each measured image, interleaved run by run
//! with its template start so that host noise hits both alike.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use smolvm::image::{self, MINIMAL};
use smolvm::{DataDir, SmolVm, VmConfig};

use super::stats::{line, stats, Line, Stats, Target};
use super::template::template_start_once;

/// `runs` boots of the floor image (bare QEMU start to exit, through the SDK's floor).
pub(super) fn floor(data: &DataDir, runs: usize) -> Result<Vec<Duration>> {
    (0..runs)
        .map(|_| smolvm::floor::boot_once(data).map_err(Into::into))
        .collect()
}

/// The images whose starts are measured: `minimal` first (the floor's own stack), then each
/// of `compared` once, in the order given.
pub(super) fn measured_images(compared: &[String]) -> Vec<String> {
    let mut measured: Vec<String> = vec![MINIMAL.to_string()];
    for name in compared {
        if !measured.contains(name) {
            measured.push(name.clone());
        }
    }
    measured
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

/// Cold and template starts of each measured image, `[image][run]`.
pub(super) struct Starts {
    /// The measured images, as [`measured_images`] orders them.
    images: Vec<String>,
    /// Cold start → first result.
    cold: Vec<Vec<Duration>>,
    /// Template start → first result.
    template: Vec<Vec<Duration>>,
}

impl Starts {
    /// `runs` cold and template starts of each of `images` (whose templates are current),
    /// interleaved run by run and image by image.
    pub(super) fn measure(data: &DataDir, images: &[String], runs: usize) -> Result<Self> {
        let mut cold: Vec<Vec<Duration>> = vec![Vec::new(); images.len()];
        let mut template: Vec<Vec<Duration>> = vec![Vec::new(); images.len()];
        for _ in 0..runs {
            for (at, name) in images.iter().enumerate() {
                cold[at].push(cold_start_once(data, name)?);
                template[at].push(template_start_once(data, name)?);
            }
        }
        Ok(Starts {
            images: images.to_vec(),
            cold,
            template,
        })
    }

    /// Where `name` is among the measured images (it must be one).
    fn at(&self, name: &str) -> usize {
        self.images
            .iter()
            .position(|m| m == name)
            .expect("measured")
    }

    /// The cold starts of `name`.
    pub(super) fn cold_of(&self, name: &str) -> Stats {
        stats(&self.cold[self.at(name)])
    }

    /// The template starts of `name`.
    pub(super) fn template_of(&self, name: &str) -> Stats {
        stats(&self.template[self.at(name)])
    }
}

/// The cold start of `minimal` against the boot floor: both initramfs boots, so the ratio is
/// our stack's own overhead.
pub(super) fn cold_line(starts: &Starts, floor: Stats) -> Line {
    line(
        format!("cold start -> first result [{MINIMAL}]"),
        starts.cold_of(MINIMAL),
        "boot floor",
        floor,
        Target::ratio(1.3),
    )
}

/// The cold start of each compared image against the boot floor, then each but the first
/// against the first.
pub(super) fn image_lines(compared: &[String], starts: &Starts, floor: Stats) -> Vec<Line> {
    let mut image_lines = Vec::new();
    for name in compared {
        image_lines.push(line(
            format!("cold start [{name}]"),
            starts.cold_of(name),
            "boot floor",
            floor,
            Target::NONE,
        ));
    }
    if let Some(baseline) = compared.first() {
        for name in compared.iter().skip(1) {
            image_lines.push(line(
                format!("cold start [{name}]"),
                starts.cold_of(name),
                format!("cold start [{baseline}]"),
                starts.cold_of(baseline),
                comparison_target(name, baseline),
            ));
        }
    }
    image_lines
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
