//! Named sandboxes: create, ls, info, start, stop, restart, rm.

use anyhow::{bail, Result};
use smolvm::sandbox::{self, SandboxInfo};
use smolvm::store::generate_name;
use smolvm::{DataDir, SmolVm, VmConfig};

use crate::cli::{CreateArgs, LsArgs, NameArg, RmArgs};
use crate::output::{print_json, Failure};

/// How often a generated name may collide before giving up.
const NAME_ATTEMPTS: usize = 5;

pub fn create(args: CreateArgs, json: bool) -> Result<i32> {
    let data = DataDir::from_env();
    let env_vars = super::parse_env_pairs(&args.env)?;
    let mut attempt = 0;
    let vm = loop {
        let name = args.name.clone().unwrap_or_else(generate_name);
        let config = VmConfig {
            vm_id: Some(name),
            image: args.image.clone(),
            vcpu_count: args.size.cpus,
            mem_size_mib: args.size.memory,
            env_vars: env_vars.clone(),
            ..VmConfig::default()
        };
        let vm = SmolVm::new_persistent(config, data.clone())?;
        match vm.start() {
            Ok(()) => break vm,
            // A generated name may collide with another `create` running at the same moment.
            Err(smolvm::Error::InvalidConfig { field: "vm_id", .. })
                if args.name.is_none() && attempt < NAME_ATTEMPTS =>
            {
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    };
    if json {
        print_json(&serde_json::json!({ "name": vm.vm_id(), "state": "running" }));
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
        .filter(|s| args.all || s.state == "running")
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
    }
    Ok(0)
}

fn say(json: bool, name: &str, state: &str, text: String) {
    if json {
        print_json(&serde_json::json!({ "name": name, "state": state }));
    } else {
        println!("{text}");
    }
}

pub fn start(args: NameArg, json: bool) -> Result<i32> {
    let vm = SmolVm::attach(&args.name)?;
    let was_running = vm.status() == smolvm::VmState::Running;
    vm.start()?;
    let text = if was_running {
        format!("{} is already running", vm.vm_id())
    } else {
        format!("{} started", vm.vm_id())
    };
    say(json, vm.vm_id(), "running", text);
    Ok(0)
}

pub fn stop(args: NameArg, json: bool) -> Result<i32> {
    let vm = SmolVm::attach(&args.name)?;
    let was_running = vm.status() == smolvm::VmState::Running;
    vm.stop()?;
    let text = if was_running {
        format!("{} stopped", vm.vm_id())
    } else {
        format!("{} is not running", vm.vm_id())
    };
    say(json, vm.vm_id(), "stopped", text);
    Ok(0)
}

pub fn restart(args: NameArg, json: bool) -> Result<i32> {
    let vm = SmolVm::attach(&args.name)?;
    vm.stop()?;
    vm.start()?;
    say(
        json,
        vm.vm_id(),
        "running",
        format!("{} restarted", vm.vm_id()),
    );
    Ok(0)
}

/// `rm` refuses a running sandbox without `--force`: removing it would kill whatever runs in
/// it, which deserves an explicit word.
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
        if let Some(running) = targets.iter().find(|s| s.state == "running") {
            let name = &running.record.name;
            bail!(Failure {
                code: "sandbox_running",
                exit: 4,
                message: format!(
                    "sandbox {name} is running; stop it first or remove it with --force"
                ),
                hint: Some(format!("smolvm rm --force {name}")),
            });
        }
    }
    let mut removed = Vec::new();
    for target in targets {
        if target.state == "running" {
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
