//! Image build: how long a Debian image takes to build, timed now on a throwaway image
//! (`--build-image`) or as recorded at the last build of `debian`.

use std::time::Instant;

use anyhow::Result;
use smolvm::{image, DataDir};

/// Seconds a Debian image build takes: measured now on a throwaway image (`fresh`), else as
/// recorded at the last build of `debian`.
pub(super) fn image_build_secs(data: &DataDir, fresh: bool) -> Result<(f64, &'static str)> {
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
