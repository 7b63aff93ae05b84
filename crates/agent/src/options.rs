//! What the agent may do to the system it runs on: everything that differs between a guest
//! (PID 1 of a SmolVM guest, owning the whole machine) and host mode (an ordinary host process
//! standing in for a VM in tests).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use smolvm_protocol::{GuestIdentity, ENV_FILE_PATH};

use crate::{identity, sys};

/// Where commands start, and their `HOME`, in a guest.
const GUEST_HOME: &str = "/root";

/// The agent's side effects on the system it runs on.
///
/// Every effect a request can have beyond the files and commands it names goes through this
/// struct, so there are exactly two configurations and nothing in between:
///
/// | effect | [`Options::guest`] | [`Options::host`] (`STATE` = the state dir) |
/// |---|---|---|
/// | clock in `Hello` | steps `CLOCK_REALTIME` (`clock_settime`) | recorded in `STATE/host-time-ns`, clock untouched |
/// | identity in `Hello` | `sethostname`, `/etc/machine-id`, kernel RNG reseeded | `STATE/etc/hostname` and `STATE/etc/machine-id` written; RNG untouched |
/// | managed environment | `/etc/profile.d/smolvm_env.sh` | `STATE/etc/profile.d/smolvm_env.sh` |
/// | login shells (`sh -lc`) read it through | `/etc/profile` | `STATE/home/.profile` (written by [`Options::host`]) |
/// | `HOME` and default working directory | `/root` | `STATE/home` |
/// | `uptime_ms` in `Hello` | time since boot | time since the agent started |
/// | `Shutdown` / channel closed | [`serve`](crate::serve) returns; the binary powers off | [`serve`](crate::serve) kills the process groups of its commands and returns |
///
/// Mounts, `/dev` links, the boot hostname and reboots are not here: only the PID 1 path of
/// the binary does them (see [`crate::guest`]), and host mode can never run as PID 1.
///
/// In host mode commands run as the invoking user, on the host, with the host's `/bin/sh`
/// and the host's files: host mode is a test double, not a sandbox.
#[derive(Debug, Clone)]
pub struct Options {
    /// `None` in a guest.
    state_dir: Option<PathBuf>,
    env_file: PathBuf,
    home: PathBuf,
    started: Instant,
}

impl Options {
    /// The guest configuration: the agent owns the machine it runs on.
    pub fn guest() -> Self {
        Self {
            state_dir: None,
            env_file: PathBuf::from(ENV_FILE_PATH),
            home: PathBuf::from(GUEST_HOME),
            started: Instant::now(),
        }
    }

    /// The host-mode configuration: every system-wide effect is redirected under `state_dir`
    /// or skipped (see the table on [`Options`]). Creates `state_dir` and its layout
    /// (`home/`, `home/.profile`, `etc/profile.d/`). Refuses `/` as the state dir, which would
    /// make the redirections point back at the host's own files.
    pub fn host(state_dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(state_dir)?;
        let state_dir = fs::canonicalize(state_dir)?;
        if state_dir == Path::new("/") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the state dir cannot be / (it would redirect nothing away from the host)",
            ));
        }
        let env_file = state_dir.join(ENV_FILE_PATH.trim_start_matches('/'));
        let home = state_dir.join("home");
        if let Some(dir) = env_file.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::create_dir_all(&home)?;
        // A login shell reads `$HOME/.profile` after the host's own `/etc/profile`: that is
        // where host mode sources the managed environment, as `/etc/profile.d` does in a guest.
        let env = shell_quote(&env_file.to_string_lossy());
        fs::write(
            home.join(".profile"),
            format!(
                "# SmolVM agent, host mode: the managed environment variables.\n\
                 if [ -r {env} ]; then . {env}; fi\n"
            ),
        )?;
        Ok(Self {
            state_dir: Some(state_dir),
            env_file,
            home,
            started: Instant::now(),
        })
    }

    /// Whether these are host-mode options.
    pub fn is_host_mode(&self) -> bool {
        self.state_dir.is_some()
    }

    /// The host-mode state dir (absolute); `None` in a guest.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }

    /// The managed environment file.
    pub fn env_file(&self) -> &Path {
        &self.env_file
    }

    /// `HOME` of every command, and its working directory when the request names none.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Handles the host's wall-clock time from a `Hello`.
    pub(crate) fn step_clock(&self, ns: u64) {
        match &self.state_dir {
            None => {
                if let Err(e) = sys::set_clock(ns) {
                    eprintln!("smolvm-agent: cannot set the clock: {e}");
                }
            }
            Some(state) => {
                let path = state.join("host-time-ns");
                if let Err(e) = fs::write(&path, format!("{ns}\n")) {
                    eprintln!("smolvm-agent: cannot write {}: {e}", path.display());
                }
            }
        }
    }

    /// Handles the identity from a `Hello`.
    pub(crate) fn apply_identity(&self, id: &GuestIdentity) {
        match &self.state_dir {
            None => identity::apply(id),
            Some(state) => identity::record(id, &state.join("etc")),
        }
    }

    /// The `uptime_ms` of a `Hello` answer.
    pub(crate) fn uptime_ms(&self) -> u64 {
        match self.state_dir {
            None => sys::uptime_ms(),
            Some(_) => self.started.elapsed().as_millis() as u64,
        }
    }
}

/// `text` single-quoted for `/bin/sh`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_options_are_the_guest_paths() {
        let options = Options::guest();
        assert!(!options.is_host_mode());
        assert_eq!(
            options.env_file(),
            Path::new("/etc/profile.d/smolvm_env.sh")
        );
        assert_eq!(options.home(), Path::new("/root"));
        assert!(options.state_dir().is_none());
    }

    #[test]
    fn host_options_stay_under_the_state_dir() {
        let dir = std::env::temp_dir().join(format!("smolvm-agent-options-{}", std::process::id()));
        let options = Options::host(&dir).unwrap();
        let state = fs::canonicalize(&dir).unwrap();
        assert!(options.is_host_mode());
        assert_eq!(options.state_dir(), Some(state.as_path()));
        assert!(options.env_file().starts_with(&state));
        assert!(options.home().starts_with(&state));
        let profile = fs::read_to_string(options.home().join(".profile")).unwrap();
        assert!(profile.contains(&*options.env_file().to_string_lossy()));
        fs::remove_dir_all(&dir).unwrap();
        assert!(Options::host(Path::new("/")).is_err());
    }

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
