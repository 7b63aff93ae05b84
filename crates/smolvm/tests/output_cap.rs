//! Buffered runs keep at most `max_output` bytes per stream, so a guest that writes without
//! end cannot grow the host's memory. One test, one VM: the memory figures below are this
//! process's, and no other test may run in it meanwhile.

mod common;

use std::time::Duration;

use smolvm::run::DEFAULT_MAX_OUTPUT;
use smolvm::RunOptions;

/// A `VmXXX:  N kB` line of /proc/self/status, in bytes.
fn status_bytes(field: &str) -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: usize = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kb * 1024
}

/// Resets this process's peak RSS to its current RSS (Linux >= 4.0), so that the next
/// `VmHWM` reading is the peak of what follows; falls back to the peak so far.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[test]
fn output_is_capped_per_stream_and_the_host_stays_bounded() {
    let vm = common::vm();

    // Small output is untouched.
    let small = vm.run("echo out; echo err >&2").unwrap();
    assert_eq!(small.stdout_str(), "out\n");
    assert_eq!(small.stderr_str(), "err\n");
    assert!(!small.stdout_truncated && !small.stderr_truncated);

    // An explicit cap keeps the first bytes of each stream and flags only the one cut.
    let capped = vm
        .run_with(
            "printf 'abcdefghij%.0s' $(seq 500) >&2; echo done",
            &RunOptions::default().with_max_output(Some(1000)),
        )
        .unwrap();
    assert_eq!(capped.stderr.len(), 1000);
    assert!(capped.stderr.starts_with(b"abcdefghijabcdefghij"));
    assert!(capped.stderr_truncated);
    assert_eq!(capped.stdout_str(), "done\n");
    assert!(!capped.stdout_truncated);
    // Exactly the cap is not a truncation; no cap keeps everything.
    let exact = vm
        .run_with(
            "head -c 1000 /dev/zero",
            &RunOptions::default().with_max_output(Some(1000)),
        )
        .unwrap();
    assert_eq!((exact.stdout.len(), exact.stdout_truncated), (1000, false));
    let all = vm
        .run_with(
            "head -c 300000 /dev/zero",
            &RunOptions::default().with_max_output(None),
        )
        .unwrap();
    assert_eq!((all.stdout.len(), all.stdout_truncated), (300_000, false));

    // 1 GiB through the default cap: the command runs to its end (its exit code arrives),
    // 64 MiB are kept, and this process grows by about that, not by a gibibyte.
    reset_peak_rss();
    let before = status_bytes("VmHWM:");
    let big = vm
        .run_with(
            "head -c 1G /dev/zero; echo tail >&2",
            &RunOptions::default().with_timeout(Some(Duration::from_secs(600))),
        )
        .unwrap();
    let growth = status_bytes("VmHWM:").saturating_sub(before);
    assert_eq!(big.exit_code, 0);
    assert_eq!(big.stdout.len(), DEFAULT_MAX_OUTPUT);
    assert!(big.stdout.iter().all(|&b| b == 0));
    assert!(big.stdout_truncated);
    assert_eq!(big.stderr_str(), "tail\n");
    assert!(!big.stderr_truncated);
    assert!(
        growth < 2 * DEFAULT_MAX_OUTPUT,
        "peak RSS grew by {} MiB for a {} MiB cap",
        growth >> 20,
        DEFAULT_MAX_OUTPUT >> 20
    );
    eprintln!(
        "1 GiB of stdout: peak RSS grew by {} MiB (cap {} MiB)",
        growth >> 20,
        DEFAULT_MAX_OUTPUT >> 20
    );
}
