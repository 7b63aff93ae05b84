//! Build progress drawn with indicatif.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use smolvm::image::Progress;

/// A spinner per build step, showing the latest output line and the elapsed time.
pub struct Spinner {
    bar: std::sync::Mutex<Option<ProgressBar>>,
    hidden: bool,
}

impl Spinner {
    /// Draws on stderr; `hidden` (for `--json`) draws nothing.
    pub fn new(hidden: bool) -> Self {
        Self {
            bar: std::sync::Mutex::new(None),
            hidden,
        }
    }
}

impl Progress for Spinner {
    fn step(&self, name: &str) {
        let mut slot = self.bar.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = slot.take() {
            old.finish();
        }
        if self.hidden {
            return;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix}: {wide_msg}")
                .expect("valid template"),
        );
        bar.set_prefix(name.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        *slot = Some(bar);
    }

    fn tick(&self, message: &str) {
        if let Some(bar) = &*self.bar.lock().unwrap_or_else(|e| e.into_inner()) {
            bar.set_message(message.to_string());
        }
    }

    fn finish(&self, message: &str) {
        if let Some(bar) = self.bar.lock().unwrap_or_else(|e| e.into_inner()).take() {
            bar.finish_with_message(message.to_string());
        }
    }
}
