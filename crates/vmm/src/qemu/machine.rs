//! [`Machine`] for QEMU: the controls, spoken over QMP.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;

use serde_json::{json, Value};

use super::qmp::QmpLink;
use crate::error::{Error, Result};
use crate::machine::{Machine, SaveStatus};

/// The name QEMU knows the migration stream's descriptor by (passed with `getfd`).
const MIGRATION_FD_NAME: &str = "smolvm-migration";

/// Migration is local: no reason to hold it to QEMU's default 32 MiB/s.
const MAX_BANDWIDTH: u64 = 1 << 40;

/// A QEMU machine's monitor session.
pub struct QemuMachine {
    link: QmpLink,
}

impl QemuMachine {
    /// Controls over the supervisor's end of QEMU's monitor socket pair; the QMP session is
    /// negotiated on first use.
    pub fn new(monitor: UnixStream) -> Self {
        Self {
            link: QmpLink::new(monitor),
        }
    }

    fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value> {
        self.link
            .session()
            .and_then(|qmp| qmp.execute(command, arguments))
            .map_err(Error::Monitor)
    }
}

impl Machine for QemuMachine {
    fn pause(&mut self) -> Result<()> {
        self.execute("stop", None).map(drop)
    }

    fn resume(&mut self) -> Result<()> {
        self.execute("cont", None).map(drop)
    }

    fn save_state(&mut self, stream: OwnedFd) -> Result<()> {
        // The stream reaches QEMU through the monitor (`getfd`): a confined QEMU can open no
        // socket by name.
        let qmp = self.link.session().map_err(Error::Monitor)?;
        qmp.execute_with_fd(
            "getfd",
            Some(json!({ "fdname": MIGRATION_FD_NAME })),
            Some(stream.as_fd()),
        )
        .map_err(Error::Monitor)?;
        drop(stream);
        self.execute(
            "migrate-set-parameters",
            Some(json!({ "max-bandwidth": MAX_BANDWIDTH })),
        )?;
        self.execute(
            "migrate",
            Some(json!({ "uri": format!("fd:{MIGRATION_FD_NAME}") })),
        )
        .map(drop)
    }

    fn save_status(&mut self) -> Result<SaveStatus> {
        let info = self.execute("query-migrate", None)?;
        Ok(match info.get("status").and_then(Value::as_str) {
            Some("completed") => SaveStatus::Completed,
            Some(status @ ("failed" | "cancelled")) => {
                let detail = info
                    .get("error-desc")
                    .and_then(Value::as_str)
                    .unwrap_or("no details");
                SaveStatus::Failed(format!("QEMU's migration {status}: {detail}"))
            }
            _ => SaveStatus::InProgress,
        })
    }

    fn is_loading(&mut self) -> Result<bool> {
        let state = self
            .link
            .session()
            .and_then(|qmp| qmp.run_state())
            .map_err(Error::Monitor)?;
        Ok(state == "inmigrate")
    }
}
