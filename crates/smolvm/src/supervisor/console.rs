//! The guest's serial console, written to `console.log` with a cap.
//!
//! The guest is hostile and may print without end, so the log is capped: when `console.log`
//! would pass [`DEFAULT_CAP`] bytes it is renamed to `console.log.1` (replacing the previous
//! one) and a new `console.log` is started. At most twice the cap is ever on disk, and the
//! most recent output (at least one cap's worth, once there is that much) is always kept.
//! `smolvm logs` reads `console.log.1`, then `console.log`.

// Wired to QEMU's console stream by the supervisor's boot code; until then only tests use it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use smolvm_sys::fs::{create_with_mode, open_private_append, PRIVATE_FILE};

/// Size at which `console.log` is rotated: 4 MiB, far more than a boot prints, small enough
/// that two of them per sandbox do not matter.
pub(crate) const DEFAULT_CAP: u64 = 4 << 20;

/// Appends console output to a log file of bounded size (see the module's doc).
pub(crate) struct ConsoleLog {
    path: PathBuf,
    rotated: PathBuf,
    cap: u64,
    file: File,
    len: u64,
}

impl ConsoleLog {
    /// Opens (appending to, creating 0600) the log at `path`, capped at [`DEFAULT_CAP`].
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        Self::with_cap(path, DEFAULT_CAP)
    }

    /// As [`ConsoleLog::open`] with a cap of `cap` bytes (at least 1).
    pub(crate) fn with_cap(path: &Path, cap: u64) -> io::Result<Self> {
        let file = open_private_append(path)?;
        let len = file.metadata()?.len();
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        Ok(Self {
            path: path.to_path_buf(),
            rotated: rotated.into(),
            cap: cap.max(1),
            file,
            len,
        })
    }

    /// Appends `bytes`, rotating whenever the current file reaches the cap. A chunk is split
    /// at the cap, so no file ever exceeds it.
    pub(crate) fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.len >= self.cap {
                self.rotate()?;
            }
            let room = usize::try_from(self.cap - self.len).unwrap_or(usize::MAX);
            let (now, later) = bytes.split_at(bytes.len().min(room));
            self.file.write_all(now)?;
            self.len += now.len() as u64;
            bytes = later;
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        // The rename replaces the previous part atomically; a reader holding the old file
        // open (`smolvm logs -f`) keeps reading it to its end.
        std::fs::rename(&self.path, &self.rotated)?;
        self.file = create_with_mode(&self.path, PRIVATE_FILE)?;
        self.len = 0;
        Ok(())
    }
}

/// Copies the console stream from `reader` into `log` until EOF (QEMU exited).
///
/// It keeps reading even when writing fails (a full disk): a console nobody drains would
/// block the guest's serial output, and with it the guest. Such output is dropped, and the
/// failure logged once.
pub(crate) fn pump(mut reader: impl Read, mut log: ConsoleLog) {
    let mut buf = vec![0u8; 64 << 10];
    let mut failing = false;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading the guest console failed: {e}");
                return;
            }
        };
        match log.write(&buf[..n]) {
            Ok(()) => failing = false,
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "writing {} failed ({e}); dropping console output until it works",
                        log.path.display()
                    );
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "smolvm-console-{name}-{}-{:x}",
            std::process::id(),
            smolvm_sys::random::random_u64()
        ));
        smolvm_sys::fs::create_dir_private(&dir).unwrap();
        dir
    }

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| b'a' + (i % 26) as u8).collect()
    }

    fn on_disk(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn nothing_is_lost_below_the_cap() {
        let dir = scratch("below");
        let path = dir.join("console.log");
        let data = bytes(100);
        let mut log = ConsoleLog::with_cap(&path, 100).unwrap();
        for chunk in data.chunks(7) {
            log.write(chunk).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            data,
            "exactly the cap: no rotation"
        );
        assert!(!dir.join("console.log.1").exists());
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_default_cap_is_4_mib() {
        let dir = scratch("default");
        let log = ConsoleLog::open(&dir.join("console.log")).unwrap();
        assert_eq!(log.cap, DEFAULT_CAP);
        assert_eq!(DEFAULT_CAP, 4 * 1024 * 1024);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rotates_at_the_cap_and_keeps_at_most_twice_it() {
        let dir = scratch("rotate");
        let path = dir.join("console.log");
        let data = bytes(1000);
        let mut log = ConsoleLog::with_cap(&path, 100).unwrap();
        for chunk in data.chunks(33) {
            log.write(chunk).unwrap();
            assert!(on_disk(&dir) <= 200, "{} bytes on disk", on_disk(&dir));
            assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        }
        let old = std::fs::read(dir.join("console.log.1")).unwrap();
        let new = std::fs::read(&path).unwrap();
        assert_eq!(old, &data[800..900]);
        assert_eq!(new, &data[900..]);
        let mode = std::fs::metadata(dir.join("console.log.1")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A chunk larger than the cap is split, never written whole.
        log.write(&bytes(350)).unwrap();
        assert!(on_disk(&dir) <= 200);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_reopened_log_counts_what_it_holds() {
        let dir = scratch("reopen");
        let path = dir.join("console.log");
        ConsoleLog::with_cap(&path, 100)
            .unwrap()
            .write(&bytes(90))
            .unwrap();
        let mut log = ConsoleLog::with_cap(&path, 100).unwrap();
        log.write(&bytes(20)).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("console.log.1")).unwrap().len(),
            100
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pump_copies_until_eof_with_the_cap() {
        let dir = scratch("pump");
        let path = dir.join("console.log");
        let data = bytes(300 << 10);
        let log = ConsoleLog::with_cap(&path, 100 << 10).unwrap();
        pump(&data[..], log);
        let mut kept = std::fs::read(dir.join("console.log.1")).unwrap();
        kept.extend(std::fs::read(&path).unwrap());
        assert_eq!(
            kept,
            &data[data.len() - kept.len()..],
            "the newest output, in order"
        );
        assert!(kept.len() >= 100 << 10 && kept.len() <= 200 << 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
