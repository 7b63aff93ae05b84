//! A small client for QEMU's machine protocol (QMP): JSON lines over the VM's `qmp.sock`.
//! Used to pause and resume the guest and to drive migration for snapshots.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one QMP command may take to be answered.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected QMP session, past the capabilities negotiation.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to the QMP socket at `path`, retrying until `timeout` passes (QEMU creates the
    /// socket shortly after it starts), and enters command mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, String> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(stream) => break stream,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!(
                        "cannot connect to QEMU's monitor {}: {e}",
                        path.display()
                    ))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut qmp = Self {
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("unexpected QMP greeting: {greeting}"));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments`; returns its `return` value, or QEMU's error text.
    /// Asynchronous events that arrive meanwhile are skipped.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, String> {
        let mut message = json!({ "execute": command });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        let mut line = message.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .map_err(|e| format!("QMP {command}: {e}"))?;
        loop {
            let reply = self.read_message()?;
            if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = reply.get("error") {
                let description = error
                    .get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                return Err(format!("QMP {command}: {description}"));
            }
            // An event ({"event": ...}); not the answer.
        }
    }

    /// QEMU's run state (`running`, `paused`, `inmigrate`, `postmigrate`, ...).
    pub fn run_state(&mut self) -> Result<String, String> {
        let status = self.execute("query-status", None)?;
        status
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("QMP query-status: unexpected answer {status}"))
    }

    fn read_message(&mut self) -> Result<Value, String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => Err("QEMU closed its monitor".to_string()),
            Ok(_) => serde_json::from_str(&line)
                .map_err(|e| format!("malformed QMP message {line:?}: {e}")),
            Err(e) => Err(format!("reading QEMU's monitor: {e}")),
        }
    }
}
