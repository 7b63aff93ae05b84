//! A small client for QEMU's machine protocol (QMP): JSON lines over a socket pair whose other
//! end QEMU inherited (`-chardev socket,fd=N -mon chardev=...,mode=control`). No socket file
//! exists: only the supervisor can drive QEMU. Used to pause and resume the guest and to drive
//! migration for snapshots.

use std::io::{BufRead, BufReader, IoSlice, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};

/// How long one QMP command may take to be answered.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest line QEMU's monitor may send us (its answers to our commands are small).
const MAX_LINE: u64 = 1 << 20;

/// The supervisor's end of QEMU's monitor; the session is negotiated on first use.
pub struct QmpLink {
    stream: Option<UnixStream>,
    session: Option<Qmp>,
}

impl QmpLink {
    /// Wraps the supervisor's end of the monitor's socket pair.
    pub fn new(stream: UnixStream) -> Self {
        Self {
            stream: Some(stream),
            session: None,
        }
    }

    /// The session, negotiating it first if needed.
    pub fn session(&mut self) -> Result<&mut Qmp, String> {
        if self.session.is_none() {
            let stream = self
                .stream
                .take()
                .ok_or("QEMU's monitor failed earlier and cannot be reconnected")?;
            self.session = Some(Qmp::over(stream)?);
        }
        Ok(self.session.as_mut().expect("set above"))
    }
}

/// A QMP session, past the capabilities negotiation.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Qmp {
    /// Reads QEMU's greeting on `stream` and enters command mode.
    pub fn over(stream: UnixStream) -> Result<Self, String> {
        stream
            .set_read_timeout(Some(COMMAND_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        let mut qmp = Self {
            reader: BufReader::new(stream),
            writer,
            next_id: 1,
        };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(format!("unexpected QMP greeting: {greeting}"));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments`; returns its `return` value, or QEMU's error text.
    /// Asynchronous events, and late answers to earlier commands, are skipped: each command
    /// carries an id that its answer echoes.
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, String> {
        self.execute_with_fd(command, arguments, None)
    }

    /// [`Qmp::execute`], passing `fd` along with the command (for `getfd`).
    pub fn execute_with_fd(
        &mut self,
        command: &str,
        arguments: Option<Value>,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut message = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        let mut line = message.to_string();
        line.push('\n');
        match fd {
            Some(fd) => send_with_fd(&self.writer, line.as_bytes(), fd),
            None => self.writer.write_all(line.as_bytes()),
        }
        .map_err(|e| format!("QMP {command}: {e}"))?;
        loop {
            let reply = self.read_message()?;
            if reply.get("id").and_then(Value::as_u64) != Some(id) {
                continue;
            }
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
        let mut line = Vec::new();
        let read = (&mut self.reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) => Err("QEMU closed its monitor".to_string()),
            Ok(_) if !line.ends_with(b"\n") => Err("over-long message from QEMU's monitor".into()),
            Ok(_) => serde_json::from_slice(&line).map_err(|e| {
                format!(
                    "malformed QMP message {:?}: {e}",
                    String::from_utf8_lossy(&line)
                )
            }),
            Err(e) => Err(format!("reading QEMU's monitor: {e}")),
        }
    }
}

use std::io::Read;

/// Writes `bytes` on `stream` with `fd` attached (SCM_RIGHTS), as QMP's `getfd` expects.
fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> std::io::Result<()> {
    let iov = [IoSlice::new(bytes)];
    let raw = fd.as_raw_fd();
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<i32>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; zeroed is a valid empty header, filled in below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space;
    // SAFETY: the control buffer has room for one header carrying one int (CMSG_SPACE above);
    // CMSG_FIRSTHDR/CMSG_DATA point inside it.
    let sent = unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<i32>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<i32>(), raw);
        libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The descriptor went with the first byte; the rest of a short write goes plainly.
    let mut rest = &bytes[sent as usize..];
    let mut writer = stream;
    while !rest.is_empty() {
        let n = writer.write(rest)?;
        rest = &rest[n..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    /// A fake QEMU monitor on the other end of a socket pair.
    fn fake_qemu(replies: Vec<String>) -> UnixStream {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            writeln!(theirs, r#"{{"QMP": {{"version": {{}}}}}}"#).unwrap();
            let mut reader = BufReader::new(theirs.try_clone().unwrap());
            for reply in replies {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                writeln!(theirs, "{reply}").unwrap();
            }
        });
        ours
    }

    #[test]
    fn answers_are_matched_by_id_past_events_and_stale_replies() {
        let stream = fake_qemu(vec![
            r#"{"return": {}, "id": 1}"#.into(),
            concat!(
                r#"{"event": "STOP"}"#,
                "\n",
                r#"{"return": {"status": "stale"}, "id": 99}"#,
                "\n",
                r#"{"return": {"status": "paused"}, "id": 2}"#
            )
            .into(),
            r#"{"error": {"desc": "no"}, "id": 3}"#.into(),
        ]);
        let mut link = QmpLink::new(stream);
        let qmp = link.session().unwrap();
        assert_eq!(qmp.run_state().unwrap(), "paused");
        assert_eq!(qmp.execute("cont", None).unwrap_err(), "QMP cont: no");
    }

    #[test]
    fn a_descriptor_travels_with_the_command() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (file_ours, _keep) = UnixStream::pair().unwrap();
        send_with_fd(&ours, b"{}\n", file_ours.as_fd()).unwrap();
        let mut buf = [0u8; 3];
        let mut theirs = theirs;
        theirs.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"{}\n");
    }
}
