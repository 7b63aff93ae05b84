//! Making this guest a distinct machine: hostname, machine id, and a kernel RNG reseeded from
//! host randomness. Applied at every handshake, which matters most after a restore from a
//! snapshot: every copy of one snapshot starts with the same RNG state and machine id.

use std::io;
use std::path::Path;

use smolvm_protocol::GuestIdentity;

use crate::sys;

/// Where systemd-style tools and many programs read the machine id from.
const MACHINE_ID_PATH: &str = "/etc/machine-id";
/// Most seed bytes taken from the host (the pool mixes them anyway).
const MAX_SEED_BYTES: usize = 512;

/// Applies `identity`; failures are reported on the console and do not stop the handshake
/// (a read-only `/etc` must not make the guest unreachable).
pub fn apply(identity: &GuestIdentity) {
    match decode_hex(&identity.seed) {
        Some(seed) if !seed.is_empty() => {
            let seed = &seed[..seed.len().min(MAX_SEED_BYTES)];
            if let Err(e) = sys::reseed_rng(seed) {
                eprintln!("smolvm-agent: cannot reseed the kernel RNG: {e}");
            }
        }
        _ => eprintln!("smolvm-agent: ignoring a malformed RNG seed"),
    }
    if let Err(e) = sys::set_hostname(&identity.hostname) {
        eprintln!("smolvm-agent: cannot set the hostname: {e}");
    }
    if is_machine_id(&identity.machine_id) {
        if let Err(e) = write_machine_id(&identity.machine_id) {
            eprintln!("smolvm-agent: cannot write {MACHINE_ID_PATH}: {e}");
        }
    }
}

/// Host mode: records `identity` in `dir` (`hostname`, `machine-id`) instead of applying it.
/// The host's hostname, machine id and RNG are left alone; the seed is not kept.
pub fn record(identity: &GuestIdentity, dir: &Path) {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        let tmp = dir.join(format!("{name}.smolvm-tmp"));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, format!("{text}\n")))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            eprintln!("smolvm-agent: cannot write {}: {e}", path.display());
        }
    };
    write("hostname", &identity.hostname);
    if is_machine_id(&identity.machine_id) {
        write("machine-id", &identity.machine_id);
    }
}

fn is_machine_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Replaces the machine id atomically (a reader sees the old or the new one, never half).
fn write_machine_id(id: &str) -> io::Result<()> {
    if !std::path::Path::new("/etc").is_dir() {
        return Ok(());
    }
    let tmp = format!("{MACHINE_ID_PATH}.smolvm-tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, MACHINE_ID_PATH)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_seeds_decode_and_garbage_is_refused() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex(""), Some(vec![]));
    }

    #[test]
    fn machine_ids_are_32_lowercase_hex_digits() {
        assert!(is_machine_id("0123456789abcdef0123456789abcdef"));
        assert!(!is_machine_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_machine_id("../../etc/passwd"));
    }
}
