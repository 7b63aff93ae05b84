//! Randomness from the host kernel, for ids, names and guest identities.

use std::fs::File;
use std::io::Read;

/// `n` random bytes from the host's kernel, hex-encoded.
pub fn random_hex(n: usize) -> String {
    (0..n.div_ceil(8))
        .flat_map(|_| random_u64().to_le_bytes())
        .take(n)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Eight random bytes from the kernel.
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        // Only reachable on a broken host; the clock still gives distinct ids per call.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return nanos.as_nanos() as u64 ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_has_the_asked_length_and_differs_between_calls() {
        let a = random_hex(16);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(16));
    }
}
