//! Making an image's default pre-booted template current after the image is built.

use serde::Serialize;
use smolvm::image::Progress;
use smolvm::{DataDir, VmConfig};

/// What became of an image's default template.
#[derive(Debug, Serialize)]
pub struct TemplateStatus {
    /// The image.
    pub image: String,
    /// The template's key (`debian-1cpu-512m`), when it is ready.
    pub template: Option<String>,
    /// Whether it was (re)built just now.
    pub built: bool,
    /// Why there is none: sandboxes of the image then boot from scratch, which works, slower.
    pub error: Option<String>,
}

impl TemplateStatus {
    /// One line for people: `template debian-1cpu-512m ready`, or the warning.
    pub fn describe(&self) -> String {
        match (&self.template, &self.error) {
            (Some(key), _) if self.built => format!("template {key} built and ready"),
            (Some(key), _) => format!("template {key} ready"),
            (None, Some(e)) => format!(
                "warning: no pre-booted template for image {}: {e}; its sandboxes boot from \
                 scratch",
                self.image
            ),
            (None, None) => format!("image {} has no pre-booted template", self.image),
        }
    }

    /// Prints [`TemplateStatus::describe`]: on stdout, or on stderr for a warning.
    pub fn print(&self) {
        if self.error.is_some() {
            eprintln!("{}", self.describe());
        } else {
            println!("{}", self.describe());
        }
    }
}

/// Makes the template that sandboxes of `image` start from by default current (building it
/// takes one boot and a snapshot). A failure is reported, not returned: the image works
/// without one.
pub fn ensure(data: &DataDir, image: &str, progress: &dyn Progress) -> TemplateStatus {
    let current = VmConfig {
        image: Some(image.to_string()),
        ..VmConfig::default()
    }
    .validate(data)
    .ok()
    .and_then(|config| smolvm::template::find_current(data, &config));
    if current.is_none() {
        progress.step(&format!("template {image} (boot and snapshot)"));
    }
    let result = smolvm::template::ensure_for_image(data, image, None);
    let status = TemplateStatus {
        image: image.to_string(),
        template: result.as_ref().ok().and_then(|dir| {
            dir.as_ref()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        }),
        built: current.is_none() && matches!(result, Ok(Some(_))),
        error: result.err().map(|e| format!("{e:#}")),
    };
    if current.is_none() {
        progress.finish(status.template.as_deref().unwrap_or("failed"));
    }
    status
}
