//! File-transfer part of `smolvm bench`: upload and download throughput of a large file
//! against the raw guest channel's throughput, measured on the same VM in the same run.

use std::io::Read;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use smolvm::{SmolVm, VmConfig};

/// Size of the echo payloads that measure the raw channel.
const ECHO_SIZE: u32 = 4 << 20;

/// Transfer throughputs, in MiB/s.
#[derive(Debug, Clone, Serialize)]
pub(super) struct TransferBench {
    /// Size of the file moved, in MiB.
    pub file_mib: u64,
    /// Raw channel throughput (one direction), from timed echoes of 4 MiB.
    pub channel_mib_s: f64,
    /// `upload_file` throughput.
    pub upload_mib_s: f64,
    /// `download_file` throughput.
    pub download_mib_s: f64,
}

/// Moves a `file_mib` MiB random file up and down on a fresh `minimal` VM.
pub(super) fn run(file_mib: u64) -> Result<TransferBench> {
    let vm = SmolVm::create(VmConfig {
        image: Some("minimal".into()),
        // The minimal image keeps /tmp in RAM; tmpfs may use half of it.
        mem_size_mib: (2 * file_mib as u32 + 256).max(512),
        ..VmConfig::default()
    })?;
    let dir = std::env::temp_dir().join(format!("smolvm-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let local = dir.join("payload.bin");
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    std::io::copy(
        &mut (&mut urandom).take(file_mib << 20),
        &mut std::fs::File::create(&local)?,
    )?;

    // An echo moves its payload both ways, one after the other.
    let rounds = ((file_mib << 20) / u64::from(ECHO_SIZE)).clamp(4, 64) as u32;
    let trips = vm.channel_bench(rounds, ECHO_SIZE)?;
    let total_s: f64 = trips.iter().map(|ns| *ns as f64 / 1e9).sum();
    let channel_mib_s =
        (2.0 * f64::from(rounds) * f64::from(ECHO_SIZE) / (1 << 20) as f64) / total_s;

    let start = Instant::now();
    vm.upload_file(&local, "/tmp/payload.bin")?;
    let upload_mib_s = file_mib as f64 / start.elapsed().as_secs_f64();
    let back = dir.join("back.bin");
    let start = Instant::now();
    vm.download_file("/tmp/payload.bin", &back)?;
    let download_mib_s = file_mib as f64 / start.elapsed().as_secs_f64();
    let same = std::fs::metadata(&back)?.len() == file_mib << 20;
    std::fs::remove_dir_all(&dir)?;
    anyhow::ensure!(same, "the downloaded file has the wrong size");
    Ok(TransferBench {
        file_mib,
        channel_mib_s,
        upload_mib_s,
        download_mib_s,
    })
}
