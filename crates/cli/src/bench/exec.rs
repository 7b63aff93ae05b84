//! Round trips on a running VM: the channel floor (bare echoes on the guest channel, timed by
//! the supervisor, plus the guest's own cost of spawning and reaping the shell, timed by the
//! agent), warm `run("true")` against that floor, and the environment operations against
//! warm `run("true")`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use smolvm::{RunOptions, SmolVm};

use super::stats::{line, stats, Line, Stats, Target};

/// Size of the echo payloads that measure the channel floor.
pub(super) const ECHO_SIZE: u32 = 100;

/// The round trips measured on one warm VM.
pub(super) struct Warm {
    /// Bare echo round trips of [`ECHO_SIZE`] bytes on the guest channel.
    pub(super) echo: Stats,
    /// The guest's spawn and reap of the shell for `true`, timed by the agent.
    pub(super) spawn: Stats,
    /// Echo median + guest spawn, sample by sample: what `run("true")` cannot beat.
    exec_floor: Stats,
    /// `run("true")`, as its caller waits for it.
    run: Stats,
    /// Setting one variable (merged into the environment).
    set: Stats,
    /// Listing the environment.
    list: Stats,
    /// Unsetting one variable.
    unset: Stats,
}

/// `round_trips` of each kind on `vm` (started, idle otherwise).
pub(super) fn measure(vm: &SmolVm, round_trips: usize) -> Result<Warm> {
    let echo_ns = vm.channel_bench(round_trips as u32, ECHO_SIZE)?;
    let echo: Vec<Duration> = echo_ns.iter().map(|ns| Duration::from_nanos(*ns)).collect();
    let (mut warm, mut spawn_floor) = (Vec::new(), Vec::new());
    for _ in 0..round_trips {
        let start = Instant::now();
        let result = vm.run_with("true", &RunOptions::default())?;
        warm.push(start.elapsed());
        spawn_floor.push(result.guest_time);
    }
    let echo_stats = stats(&echo);
    let spawn_stats = stats(&spawn_floor);
    let exec_floor: Vec<Duration> = spawn_floor
        .iter()
        .map(|d| *d + Duration::from_secs_f64(echo_stats.median_ms / 1000.0))
        .collect();

    let (mut set, mut list, mut unset) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..round_trips {
        let vars: BTreeMap<String, String> =
            [(format!("BENCH_{}", i % 8), "value".to_string())].into();
        let start = Instant::now();
        vm.set_env_vars(&vars, true)?;
        set.push(start.elapsed());
        let start = Instant::now();
        vm.list_env_vars()?;
        list.push(start.elapsed());
        let start = Instant::now();
        vm.unset_env_vars(&[format!("BENCH_{}", i % 8)])?;
        unset.push(start.elapsed());
    }
    Ok(Warm {
        echo: echo_stats,
        spawn: spawn_stats,
        exec_floor: stats(&exec_floor),
        run: stats(&warm),
        set: stats(&set),
        list: stats(&list),
        unset: stats(&unset),
    })
}

impl Warm {
    /// Warm `run("true")` against the channel floor, then each environment operation against
    /// warm `run("true")` (each is one round trip too, so it should cost about the same).
    pub(super) fn lines(&self) -> Vec<Line> {
        vec![
            line(
                "warm run(\"true\")",
                self.run,
                "channel echo + guest spawn",
                self.exec_floor,
                Target::ratio(2.0),
            ),
            line(
                "env set (merge)",
                self.set,
                "warm run(\"true\")",
                self.run,
                Target::ratio(1.2),
            ),
            line(
                "env list",
                self.list,
                "warm run(\"true\")",
                self.run,
                Target::ratio(1.2),
            ),
            line(
                "env unset",
                self.unset,
                "warm run(\"true\")",
                self.run,
                Target::ratio(1.2),
            ),
        ]
    }
}
