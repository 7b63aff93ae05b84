//! Drives the agent binary in host mode over a socket pair, as a fake backend would.
//!
//! The agent runs as a process of its own: its reaper blocks SIGCHLD and waits for every
//! child of its process, which must never happen inside the test harness.

#![allow(dead_code)] // Each test binary uses a part of the helpers.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smolvm_protocol::{
    read_frame, write_frame, AgentRequest, ExecRequest, Frame, FrameKind, Response, Shell,
    PROTOCOL_VERSION,
};

/// Longest wait for any one frame or exit: a test that would hang fails instead.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A fresh, empty directory whose name contains `tag`.
    pub fn new(tag: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "smolvm-agent-test-{}-{tag}-{n}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(std::fs::canonicalize(&path).expect("canonical temp dir"))
    }

    /// Its path (absolute, canonical).
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a request produced: its output frames, then its final response.
#[derive(Debug)]
pub struct Output {
    /// Concatenated `Stdout` payloads.
    pub stdout: Vec<u8>,
    /// Concatenated `Stderr` payloads.
    pub stderr: Vec<u8>,
    /// The final response.
    pub response: Response,
}

impl Output {
    /// Stdout as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text.
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The exit status, or a panic naming what came instead.
    pub fn exited(&self) -> smolvm_protocol::ExitStatus {
        match &self.response {
            Response::Exited(status) => *status,
            other => panic!("expected an exit, got {other:?} (stderr {:?})", self.err()),
        }
    }
}

/// A host-mode agent process and the host end of its channel.
pub struct Agent {
    child: Option<Child>,
    writer: UnixStream,
    frames: Receiver<Frame>,
    stderr: Option<JoinHandle<String>>,
    next_id: u64,
    /// The agent's state dir.
    pub state: TempDir,
}

impl Agent {
    /// Starts an agent and completes the handshake.
    pub fn start() -> Self {
        let mut agent = Self::spawn();
        match agent.call(&hello(PROTOCOL_VERSION)) {
            Response::Hello(info) => assert_eq!(info.protocol, PROTOCOL_VERSION),
            other => panic!("handshake failed: {other:?}"),
        }
        agent
    }

    /// Starts an agent without a handshake.
    pub fn spawn() -> Self {
        let state = TempDir::new("state");
        let (ours, theirs) = UnixStream::pair().expect("socket pair");
        let fd = theirs.as_raw_fd();
        let mut command = Command::new(env!("CARGO_BIN_EXE_smolvm-agent"));
        command
            .args([
                "--host-mode",
                "--channel-fd",
                &fd.to_string(),
                "--state-dir",
            ])
            .arg(state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: fcntl is async-signal-safe. Only the child's copy loses close-on-exec, so
        // no other process spawned meanwhile by a parallel test inherits the socket.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn smolvm-agent");
        drop(theirs);
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        let reader = ours.try_clone().expect("clone socket");
        let (tx, frames) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            while let Ok(Some(frame)) = read_frame(&mut reader) {
                if tx.send(frame).is_err() {
                    break;
                }
            }
        });
        Self {
            child: Some(child),
            writer: ours,
            frames,
            stderr: Some(stderr),
            next_id: 1,
            state,
        }
    }

    /// A fresh request id.
    pub fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends one frame.
    pub fn send(&mut self, frame: &Frame) {
        write_frame(&mut self.writer, frame).expect("send a frame");
    }

    /// Sends raw bytes, well-formed or not.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send bytes");
    }

    /// Sends `request` under a fresh id and returns the id.
    pub fn request(&mut self, request: &AgentRequest) -> u64 {
        let id = self.id();
        self.send(&Frame::request(id, request).expect("encode request"));
        id
    }

    /// The next frame from the agent, or `None` after `timeout` (or once the channel ended).
    pub fn try_frame(&self, timeout: Duration) -> Option<Frame> {
        self.frames.recv_timeout(timeout).ok()
    }

    /// The next frame from the agent, or a panic after [`TIMEOUT`].
    pub fn frame(&self) -> Frame {
        self.try_frame(TIMEOUT)
            .expect("no frame from the agent in time")
    }

    /// Collects request `id`'s output until its response. Output is credited back as it
    /// arrives when `credit` is set; the agent's own input credits are skipped.
    pub fn collect(&mut self, id: u64, credit: bool) -> Output {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            let frame = self.frame();
            assert_eq!(frame.id, id, "frame for another request: {frame:?}");
            match frame.kind {
                FrameKind::Stdout | FrameKind::Stderr => {
                    if credit {
                        self.send(&Frame::credit(id, frame.payload.len() as u32));
                    }
                    let sink = if frame.kind == FrameKind::Stdout {
                        &mut stdout
                    } else {
                        &mut stderr
                    };
                    sink.extend_from_slice(&frame.payload);
                }
                FrameKind::Credit => {}
                FrameKind::Response => {
                    let response = frame.to_response().expect("decode response");
                    return Output {
                        stdout,
                        stderr,
                        response,
                    };
                }
                other => panic!("unexpected {other:?} frame from the agent"),
            }
        }
    }

    /// Sends `request` and returns its output and response (output credited).
    pub fn run(&mut self, request: &AgentRequest) -> Output {
        let id = self.request(request);
        self.collect(id, true)
    }

    /// Sends `request` and returns its response; it must produce no output.
    pub fn call(&mut self, request: &AgentRequest) -> Response {
        let output = self.run(request);
        assert!(
            output.stdout.is_empty() && output.stderr.is_empty(),
            "unexpected output: {output:?}"
        );
        output.response
    }

    /// Runs `command` in a login shell.
    pub fn sh(&mut self, command: &str) -> Output {
        self.exec(ExecRequest {
            command: command.into(),
            ..ExecRequest::default()
        })
    }

    /// Runs `command` in a raw shell (no profile read).
    pub fn sh_raw(&mut self, command: &str) -> Output {
        self.exec(ExecRequest {
            command: command.into(),
            shell: Shell::Raw,
            ..ExecRequest::default()
        })
    }

    /// Runs `request` to completion.
    pub fn exec(&mut self, request: ExecRequest) -> Output {
        self.run(&AgentRequest::Exec(request))
    }

    /// Writes `content` to `path` with a `WriteFile` request.
    pub fn write_file(&mut self, path: &str, mode: u32, parents: bool, content: &[u8]) -> Response {
        let id = self.request(&AgentRequest::WriteFile {
            path: path.into(),
            mode,
            parents,
        });
        for chunk in content.chunks(100_000) {
            self.send(&Frame::data(id, FrameKind::Stdin, chunk.to_vec()));
        }
        self.send(&Frame::data(id, FrameKind::Stdin, Vec::new()));
        self.collect(id, true).response
    }

    /// Waits for the agent to exit, without closing the channel first.
    pub fn wait(&mut self) -> (std::process::ExitStatus, String) {
        let mut child = self.child.take().expect("agent already waited for");
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the agent") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the agent did not exit in time");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, stderr)
    }

    /// Closes the host end of the channel and waits for the agent to exit.
    pub fn close(mut self) -> (std::process::ExitStatus, String) {
        let _ = self.writer.shutdown(Shutdown::Both);
        self.wait()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.writer.shutdown(Shutdown::Both);
        if let Some(mut child) = self.child.take() {
            // Closing the channel makes the agent kill its commands and exit.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A `Hello` speaking `protocol`, without clock or identity.
pub fn hello(protocol: u32) -> AgentRequest {
    AgentRequest::Hello {
        protocol,
        host_time_ns: None,
        identity: None,
    }
}

/// One variable, for `EnvSet`.
pub fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
pub fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits up to [`TIMEOUT`] for `pid` to be dead.
pub fn wait_dead(pid: u32) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if is_dead(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
