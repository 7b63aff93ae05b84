//! Starting from an image's pre-booted template, as several families time it: the starts
//! interleaved with the cold boots ([`super::boot`]), the snapshot source
//! ([`super::snapshot`]) and the confinement cost ([`super::confine`]).
//!
//! Kept apart from those families so that none of them depends on another.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use smolvm::{DataDir, SmolVm, VmConfig};

/// The configuration `SmolVM(image=...)` starts with.
pub(super) fn image_config(image: &str) -> VmConfig {
    VmConfig {
        image: Some(image.to_string()),
        ..VmConfig::default()
    }
}

/// Makes sure the template of `image` in the default shape (what `SmolVM()` starts from) is
/// current, building it if needed, so that no template start pays for the build.
pub(super) fn ensure_template(data: &DataDir, image: &str) -> Result<()> {
    let config = image_config(image).validate(data)?;
    match smolvm::template::ensure(data, &config, None)
        .with_context(|| format!("making the template of {image}"))?
    {
        Some(_) => Ok(()),
        None => bail!("image {image} cannot start from a template"),
    }
}

/// Template start → first `run("true")` result on `image` (whose template is current).
pub(super) fn template_start_once(data: &DataDir, image: &str) -> Result<Duration> {
    let start = Instant::now();
    let vm = SmolVm::with_data_dir(image_config(image), data.clone())?;
    vm.start()?;
    let result = vm.run("true")?;
    let elapsed = start.elapsed();
    if !result.ok() {
        bail!("`true` failed in the guest ({image}, template start)");
    }
    // A template that cannot be loaded means a cold boot and only a warning: that must not be
    // timed as a template start.
    if !vm
        .restored_from()
        .is_some_and(|dir| dir.starts_with(data.templates_dir()))
    {
        bail!("the VM of {image} booted cold instead of starting from its template");
    }
    vm.delete()?;
    Ok(elapsed)
}
