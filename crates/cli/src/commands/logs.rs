//! `smolvm logs`: the guest console, then the supervisor's log; `-f` follows both.
//!
//! The logs are read from their end: `--tail N` reads only the bytes that hold the last N
//! lines, whatever the files' sizes. The console log comes in two parts (the supervisor rotates
//! `console.log` to `console.log.1` at its cap), read as one stream.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use smolvm::paths::VmPaths;
use smolvm::{sandbox, DataDir};

use crate::cli::LogsArgs;
use crate::output::print_json;

/// How much is read at a time, backwards from the end, looking for line starts.
const CHUNK: u64 = 64 << 10;

/// An open part of a log and how much of it is shown (its size when opened).
struct Part {
    file: File,
    len: u64,
}

impl Part {
    fn open(path: &Path) -> Option<Self> {
        let file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        Some(Self { file, len })
    }

    /// Another handle on the same open file (positions are always set before reading).
    fn try_clone(&self) -> Option<Self> {
        Some(Self {
            file: self.file.try_clone().ok()?,
            len: self.len,
        })
    }
}

/// The last `lines` lines of the parts taken as one stream (all of it for `None`), reading
/// backwards only as far as needed.
fn tail(parts: &mut [Part], lines: Option<usize>) -> std::io::Result<Vec<u8>> {
    // Chunks from the end backwards; newlines seen so far (one ending the text is not a
    // line break of its own).
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0usize;
    let mut last_byte = None;
    'parts: for part in parts.iter_mut().rev() {
        let mut pos = part.len;
        while pos > 0 {
            let step = CHUNK.min(pos);
            pos -= step;
            part.file.seek(SeekFrom::Start(pos))?;
            let mut chunk = vec![0; step as usize];
            part.file.read_exact(&mut chunk)?;
            if last_byte.is_none() {
                last_byte = chunk.last().copied();
            }
            newlines += chunk.iter().filter(|&&b| b == b'\n').count();
            chunks.push(chunk);
            let trailing = usize::from(last_byte == Some(b'\n'));
            if lines.is_some_and(|n| newlines >= n + trailing) {
                break 'parts;
            }
        }
    }
    let mut text: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    if let Some(n) = lines {
        let body = text.strip_suffix(b"\n").unwrap_or(&text);
        let start = if n == 0 {
            text.len()
        } else {
            body.iter()
                .enumerate()
                .rev()
                .filter(|(_, &b)| b == b'\n')
                .nth(n - 1)
                .map_or(0, |(i, _)| i + 1)
        };
        text.drain(..start);
    }
    Ok(text)
}

/// Reads what is appended to a log, across the supervisor's rotations.
struct Follower {
    path: PathBuf,
    part: Option<Part>,
}

impl Follower {
    /// Follows `path` from `part` (already open at the end of what was shown), or from the
    /// start of the file that appears at `path`.
    fn new(path: PathBuf, part: Option<Part>) -> Self {
        Self { path, part }
    }

    /// Writes what was appended since the last call.
    fn poll(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        // Looked at first: once the path names a new file, every write to the old one has
        // happened, so draining the old one below misses nothing.
        let current = std::fs::metadata(&self.path).ok().map(|m| m.ino());
        if let Some(part) = &mut self.part {
            part.file.seek(SeekFrom::Start(part.len))?;
            let mut fresh = Vec::new();
            part.file.read_to_end(&mut fresh)?;
            part.len += fresh.len() as u64;
            out.write_all(&fresh)?;
        }
        let held = self
            .part
            .as_ref()
            .and_then(|p| p.file.metadata().ok())
            .map(|m| m.ino());
        if current.is_some() && current != held {
            // Rotated (or created): start at the beginning of the new file.
            self.part = File::open(&self.path)
                .ok()
                .map(|file| Part { file, len: 0 });
            if let Some(part) = &mut self.part {
                let mut fresh = Vec::new();
                part.file.read_to_end(&mut fresh)?;
                part.len = fresh.len() as u64;
                out.write_all(&fresh)?;
            }
        }
        Ok(())
    }
}

pub fn logs(args: LogsArgs, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let info = sandbox::find(&data, &args.name)?;
    let paths = VmPaths::new(data.vm_dir(&info.record.name));
    // Each current part is opened once: the tail is read from it and following goes on from
    // where the tail ended, so nothing is shown twice or skipped.
    let rotated = Part::open(&paths.console_log_rotated());
    let console_current = Part::open(&paths.console_log());
    let supervisor_current = Part::open(&paths.supervisor_log());
    let mut console: Vec<Part> = rotated
        .into_iter()
        .chain(console_current.as_ref().and_then(Part::try_clone))
        .collect();
    let mut supervisor: Vec<Part> = supervisor_current
        .as_ref()
        .and_then(Part::try_clone)
        .into_iter()
        .collect();
    let console_text = tail(&mut console, args.tail)?;
    let supervisor_text = tail(&mut supervisor, args.tail)?;
    if json {
        print_json(&serde_json::json!({
            "name": info.record.name,
            "console": String::from_utf8_lossy(&console_text),
            "supervisor": String::from_utf8_lossy(&supervisor_text),
        }));
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    for (label, text) in [("console", &console_text), ("supervisor", &supervisor_text)] {
        if !text.is_empty() {
            writeln!(out, "==> {label} <==")?;
            out.write_all(text)?;
            if !text.ends_with(b"\n") {
                writeln!(out)?;
            }
        }
    }
    out.flush()?;
    if !args.follow {
        return Ok(0);
    }
    let mut followers = [
        Follower::new(paths.console_log(), console_current),
        Follower::new(paths.supervisor_log(), supervisor_current),
    ];
    // Follow until the sandbox stops or disappears (a paused one may resume).
    loop {
        std::thread::sleep(Duration::from_millis(200));
        for follower in &mut followers {
            follower.poll(&mut out)?;
        }
        out.flush()?;
        if sandbox::find(&data, &info.record.name).map_or(true, |s| !s.state.is_live()) {
            return Ok(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smolvm-logs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn parts(paths: &[PathBuf]) -> Vec<Part> {
        paths.iter().filter_map(|p| Part::open(p)).collect()
    }

    #[test]
    fn tails_across_the_rotated_part() {
        let dir = scratch("tail");
        let (old, new) = (dir.join("console.log.1"), dir.join("console.log"));
        std::fs::write(&old, "one\ntwo\nthr").unwrap();
        std::fs::write(&new, "ee\nfour\n").unwrap();
        let files = [old, new];
        let text = |n| String::from_utf8(tail(&mut parts(&files), n).unwrap()).unwrap();
        assert_eq!(text(None), "one\ntwo\nthree\nfour\n");
        assert_eq!(text(Some(0)), "");
        assert_eq!(text(Some(1)), "four\n");
        assert_eq!(text(Some(2)), "three\nfour\n");
        assert_eq!(text(Some(9)), "one\ntwo\nthree\nfour\n");
        std::fs::write(&files[1], "ee\nfour").unwrap();
        assert_eq!(text(Some(1)), "four", "an unfinished last line counts");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tail_reads_only_the_end_of_a_large_log() {
        let dir = scratch("large");
        let path = dir.join("console.log");
        let line = "x".repeat(99) + "\n";
        std::fs::write(&path, line.repeat(100_000)).unwrap();
        let mut parts = parts(&[path]);
        let text = tail(&mut parts, Some(3)).unwrap();
        assert_eq!(text, line.repeat(3).as_bytes());
        // One chunk was enough: the file position is within the last CHUNK bytes.
        let pos = parts[0].file.stream_position().unwrap();
        assert!(pos >= 10_000_000 - CHUNK, "read from {pos}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn follows_across_a_rotation() {
        let dir = scratch("follow");
        let path = dir.join("console.log");
        std::fs::write(&path, "a\n").unwrap();
        let mut follower = Follower::new(path.clone(), Part::open(&path));
        let mut out = Vec::new();
        follower.poll(&mut out).unwrap();
        assert!(out.is_empty(), "starts at the end");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"b\n")
            .unwrap();
        std::fs::rename(&path, dir.join("console.log.1")).unwrap();
        std::fs::write(&path, "c\n").unwrap();
        follower.poll(&mut out).unwrap();
        assert_eq!(out, b"b\nc\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
