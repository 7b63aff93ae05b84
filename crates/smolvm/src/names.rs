//! What may name a sandbox (and a snapshot): one rule, used by the configuration, the
//! registry, images and snapshots.

use crate::error::{Error, Result};

/// Checks that `id` can name a VM: 1–63 characters of `[a-z0-9-]`, starting with a letter or
/// digit. It becomes a directory name and the guest's hostname, so it must be safe as both.
pub fn validate_vm_id(id: &str) -> Result<()> {
    let ok_chars = id
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_start = id
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if id.len() <= 63 && ok_chars && ok_start {
        Ok(())
    } else {
        Err(Error::InvalidConfig {
            field: "vm_id",
            reason: format!(
                "{id:?} is not a valid VM id: use 1-63 characters of lowercase letters, digits and \
                 '-', starting with a letter or digit (e.g. \"api-server\")"
            ),
        })
    }
}
