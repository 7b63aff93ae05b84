//! Named sandboxes: create, ls, info, start, stop, restart, rm.

use anyhow::{bail, Result};
use smolvm::sandbox::generate_name;
use smolvm::sandbox::{self, SandboxInfo};
use smolvm::{DataDir, Resource, SandboxState, SmolVm, VmConfig};

use crate::cli::{CreateArgs, LsArgs, NameArg, RmArgs};
use crate::output::{print_json, Code, Failure};

/// How often a generated name may collide before giving up.
const NAME_ATTEMPTS: usize = 5;

/// Calls `make` with `name`, or with generated names until one is free: a generated name may
/// collide with another sandbox made at the same moment.
pub fn with_name<T>(
    name: Option<&str>,
    mut make: impl FnMut(String) -> smolvm::Result<T>,
) -> smolvm::Result<T> {
    let mut attempt = 0;
    loop {
        match make(name.map_or_else(generate_name, str::to_string)) {
            Err(smolvm::Error::AlreadyExists {
                what: Resource::Sandbox,
                ..
            }) if name.is_none() && attempt < NAME_ATTEMPTS => {
                attempt += 1;
            }
            other => return other,
        }
    }
}

pub fn create(args: CreateArgs, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let env_vars = super::parse_env_pairs(&args.env)?;
    let vm = with_name(args.name.as_deref(), |name| {
        let config = VmConfig {
            vm_id: Some(name),
            image: args.image.clone(),
            vcpu_count: args.size.cpus,
            mem_size_mib: args.size.memory,
            env_vars: env_vars.clone(),
            ..VmConfig::default()
        };
        let mut vm = SmolVm::new_persistent(config, data.clone())?;
        vm.set_cold(args.cold);
        vm.start()?;
        Ok(vm)
    })?;
    if json {
        print_json(&serde_json::json!({ "name": vm.vm_id(), "state": SandboxState::Running }));
    } else {
        println!("{}", vm.vm_id());
    }
    Ok(0)
}

fn uptime(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 60 => format!("{s}s"),
        Some(s) if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        Some(s) => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

pub fn ls(args: LsArgs, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let sandboxes: Vec<SandboxInfo> = sandbox::list(&data)?
        .into_iter()
        .filter(|s| args.all || s.state.is_live())
        .collect();
    if json {
        print_json(&sandboxes);
        return Ok(0);
    }
    println!(
        "{:<28} {:<9} {:<9} {:>7} {:>4} {:>8} {:>8}",
        "NAME", "STATE", "IMAGE", "MEMORY", "CPUS", "UPTIME", "PID"
    );
    for s in &sandboxes {
        println!(
            "{:<28} {:<9} {:<9} {:>6}M {:>4} {:>8} {:>8}",
            s.record.name,
            s.state,
            s.record.image,
            s.record.memory_mib,
            s.record.cpus,
            uptime(s.uptime_secs),
            s.supervisor_pid.map_or("-".to_string(), |p| p.to_string())
        );
    }
    Ok(0)
}

pub fn info(args: NameArg, json: bool) -> Result<i32> {
    let info = sandbox::find(&DataDir::from_env(), &args.name)?;
    if json {
        print_json(&info);
    } else {
        let r = &info.record;
        println!(
            "name:        {}\nid:          {}\nstate:       {}",
            r.name, r.id, info.state
        );
        if let Some(reason) = &info.reason {
            println!("reason:      {reason}");
        }
        println!(
            "image:       {}\nmemory:      {} MiB\ncpus:        {}",
            r.image, r.memory_mib, r.cpus
        );
        println!(
            "persistent:  {}\nuptime:      {}",
            r.persistent,
            uptime(info.uptime_secs)
        );
        println!(
            "pids:        supervisor {} qemu {}",
            info.supervisor_pid.map_or("-".into(), |p| p.to_string()),
            info.qemu_pid.map_or("-".into(), |p| p.to_string())
        );
        if let Some(confinement) = &info.confinement {
            println!("qemu jail:   {}", confinement.summary());
        }
    }
    Ok(0)
}

/// Reports a sandbox's new state: `{name, state}` with `json`, else `text`.
pub fn say(json: bool, name: &str, state: SandboxState, text: String) {
    if json {
        print_json(&serde_json::json!({ "name": name, "state": state }));
    } else {
        println!("{text}");
    }
}

pub fn start(args: NameArg, json: bool) -> Result<i32> {
    let vm = SmolVm::attach(&args.name)?;
    if vm.status() == SandboxState::Paused {
        let name = vm.vm_id();
        bail!(Failure {
            code: Code::SandboxPaused,
            message: format!("sandbox {name} is paused; resume it to let it run again"),
            hint: Some(format!("smolvm resume {name}")),
        });
    }
    let was_running = vm.status() == SandboxState::Running;
    vm.start()?;
    let text = if was_running {
        format!("{} is already running", vm.vm_id())
    } else {
        format!("{} started", vm.vm_id())
    };
    say(json, vm.vm_id(), SandboxState::Running, text);
    Ok(0)
}

pub fn stop(args: NameArg, json: bool) -> Result<i32> {
    let vm = SmolVm::attach(&args.name)?;
    let was_running = vm.status().is_live();
    vm.stop()?;
    let text = if was_running {
        format!("{} stopped", vm.vm_id())
    } else {
        format!("{} is not running", vm.vm_id())
    };
    say(json, vm.vm_id(), SandboxState::Stopped, text);
    Ok(0)
}

pub fn restart(args: NameArg, json: bool) -> Result<i32> {
    let vm = SmolVm::attach(&args.name)?;
    vm.stop()?;
    vm.start()?;
    say(
        json,
        vm.vm_id(),
        SandboxState::Running,
        format!("{} restarted", vm.vm_id()),
    );
    Ok(0)
}

/// `rm` refuses a running or paused sandbox without `--force`: removing it would kill whatever
/// runs in it, which deserves an explicit word.
pub fn rm(args: RmArgs, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let targets: Vec<SandboxInfo> = if args.all {
        sandbox::list(&data)?
    } else {
        args.names
            .iter()
            .map(|n| sandbox::find(&data, n))
            .collect::<smolvm::Result<_>>()?
    };
    if !args.force {
        if let Some(live) = targets.iter().find(|s| s.state.is_live()) {
            let (name, state) = (&live.record.name, &live.state);
            bail!(Failure {
                code: Code::SandboxRunning,
                message: format!(
                    "sandbox {name} is {state}; stop it first or remove it with --force"
                ),
                hint: Some(format!("smolvm rm --force {name}")),
            });
        }
    }
    let mut removed = Vec::new();
    for target in targets {
        if target.state.is_live() {
            SmolVm::attach_in(data.clone(), &target.record.name)?.delete()?;
        } else {
            sandbox::purge(&data, &target)?;
        }
        removed.push(target.record.name);
    }
    if json {
        print_json(&serde_json::json!({ "removed": removed }));
    } else {
        for name in removed {
            println!("{name}");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken() -> smolvm::Error {
        smolvm::Error::AlreadyExists {
            what: Resource::Sandbox,
            name: "taken".into(),
            hint: "choose another name".into(),
        }
    }

    #[test]
    fn generated_names_are_retried_on_collision_but_given_names_are_not() {
        let mut tries = Vec::new();
        let name = with_name(None, |name| {
            tries.push(name.clone());
            if tries.len() < 3 {
                Err(taken())
            } else {
                Ok(name)
            }
        })
        .unwrap();
        assert_eq!(tries.len(), 3);
        assert_eq!(&name, tries.last().unwrap());
        let mut calls = 0;
        let err = with_name(Some("web"), |name| {
            calls += 1;
            assert_eq!(name, "web");
            Err::<(), _>(taken())
        });
        assert!(err.is_err());
        assert_eq!(calls, 1);
        let mut calls = 0;
        assert!(with_name(None, |_| {
            calls += 1;
            Err::<(), _>(taken())
        })
        .is_err());
        assert_eq!(calls, NAME_ATTEMPTS + 1);
    }

    #[test]
    fn paused_sandboxes_are_live() {
        use SandboxState::*;
        assert!(Running.is_live() && Paused.is_live());
        assert!(!Stopped.is_live() && !Crashed.is_live() && !Failed.is_live());
    }
}
