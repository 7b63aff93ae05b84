//! A connection to a VM's supervisor: many requests in flight at once, from many threads.

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smolvm_protocol::{
    read_frame, AgentInfo, AgentRequest, Frame, FrameKind, Response, WireRequest, CREDIT_BATCH,
    INPUT_WINDOW, PROTOCOL_VERSION,
};

use crate::error::{Error, Result};

#[derive(Default)]
struct Pending {
    waiters: HashMap<u64, Waiter>,
    closed: Option<String>,
}

/// Where a request's frames go, and how much input it may still be sent.
struct Waiter {
    frames: mpsc::Sender<Frame>,
    input: Arc<InputWindow>,
}

/// Bytes of a request's input the agent has room for (see `smolvm_protocol::INPUT_WINDOW`).
struct InputWindow {
    /// `None` once the request ended: nothing more will be read.
    available: Mutex<Option<i64>>,
    changed: Condvar,
}

impl InputWindow {
    fn new() -> Self {
        Self {
            available: Mutex::new(Some(i64::from(INPUT_WINDOW))),
            changed: Condvar::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Option<i64>> {
        self.available.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn grant(&self, bytes: u32) {
        if let Some(available) = self.state().as_mut() {
            *available += i64::from(bytes);
        }
        self.changed.notify_all();
    }

    fn close(&self) {
        *self.state() = None;
        self.changed.notify_all();
    }

    /// Waits until `bytes` may be sent and takes them; `false` when the request ended.
    fn take(&self, bytes: usize) -> bool {
        // A chunk larger than the whole window goes once the window is full.
        let need = (bytes as i64).min(i64::from(INPUT_WINDOW));
        let mut state = self.state();
        loop {
            match state.as_mut() {
                None => return false,
                Some(available) if *available >= need => {
                    *available -= bytes as i64;
                    return true;
                }
                Some(_) => state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

/// A multiplexed connection to one supervisor.
pub struct Connection {
    vm_id: String,
    writer: Mutex<UnixStream>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    agent: std::sync::OnceLock<AgentInfo>,
}

/// The frames of one request in flight.
pub struct Call {
    conn: Arc<Connection>,
    /// The request's id on this connection.
    pub id: u64,
    frames: Receiver<Frame>,
    /// Output consumed and not yet granted back to the agent.
    ungranted: AtomicU64,
}

impl Call {
    /// The next frame of this request; `Ok(None)` when `deadline` passed first.
    pub fn next(&self, deadline: Option<Instant>) -> Result<Option<Frame>> {
        let received = match deadline {
            Some(deadline) => self
                .frames
                .recv_timeout(deadline.saturating_duration_since(Instant::now())),
            None => self
                .frames
                .recv()
                .map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(frame) => {
                self.consumed(&frame);
                Ok(Some(frame))
            }
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(self.conn.disconnected()),
        }
    }

    /// Output taken by the caller frees room in the request's window: grant it back to the
    /// agent in batches.
    fn consumed(&self, frame: &Frame) {
        if !matches!(frame.kind, FrameKind::Stdout | FrameKind::Stderr) {
            return;
        }
        let total = self
            .ungranted
            .fetch_add(frame.payload.len() as u64, Ordering::Relaxed)
            + frame.payload.len() as u64;
        if total >= u64::from(CREDIT_BATCH) {
            let granted = self.ungranted.swap(0, Ordering::Relaxed);
            // A failure means the connection is gone, which the next read reports.
            let _ = self.conn.write(&Frame::credit(
                self.id,
                granted.min(u64::from(u32::MAX)) as u32,
            ));
        }
    }

    /// The connection this request runs on.
    pub fn connection(&self) -> Arc<Connection> {
        Arc::clone(&self.conn)
    }

    /// The next frame if one has already arrived.
    pub fn try_next(&self) -> Result<Option<Frame>> {
        match self.frames.try_recv() {
            Ok(frame) => {
                self.consumed(&frame);
                Ok(Some(frame))
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => Ok(None),
            Err(std::sync::mpsc::TryRecvError::Disconnected) => Err(self.conn.disconnected()),
        }
    }

    /// Sends a frame (stdin, signal) belonging to this request; stdin waits for room in the
    /// request's input window.
    pub fn send(&self, kind: FrameKind, payload: Vec<u8>) -> Result<()> {
        self.conn.send_frame(&Frame::data(self.id, kind, payload))
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let waiter = self
            .conn
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiters
            .remove(&self.id);
        if let Some(waiter) = waiter {
            // Still running and nobody will read its output any more: let it run to its end
            // (its output is dropped here) rather than wait for credit forever.
            waiter.input.close();
            let _ = self.conn.write(&Frame::credit(self.id, u32::MAX));
        }
    }
}

impl Connection {
    /// Connects to the supervisor socket at `path` and performs the handshake.
    pub fn connect(path: &Path, vm_id: &str) -> Result<Arc<Self>> {
        let stream = UnixStream::connect(path).map_err(|e| Error::Disconnected {
            vm_id: vm_id.into(),
            reason: format!("cannot connect to {}: {e}", path.display()),
        })?;
        let reader = stream
            .try_clone()
            .map_err(|e| Error::io("cloning the supervisor socket", e))?;
        let pending = Arc::new(Mutex::new(Pending::default()));
        let for_reader = Arc::clone(&pending);
        std::thread::Builder::new()
            .name(format!("smolvm-{vm_id}"))
            .spawn(move || pump(reader, &for_reader))
            .map_err(|e| Error::io("starting the connection thread", e))?;
        let conn = Arc::new(Connection {
            vm_id: vm_id.into(),
            writer: Mutex::new(stream),
            pending,
            next_id: AtomicU64::new(1),
            agent: std::sync::OnceLock::new(),
        });
        let host_time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let hello = AgentRequest::Hello {
            protocol: PROTOCOL_VERSION,
            host_time_ns: Some(host_time_ns),
            identity: None,
        };
        match conn.call(&hello, Some(Duration::from_secs(10)))? {
            Response::Hello(info) => {
                let _ = conn.agent.set(info);
            }
            other => {
                return Err(Error::Disconnected {
                    vm_id: vm_id.into(),
                    reason: format!("handshake refused: {other:?}"),
                })
            }
        }
        Ok(conn)
    }

    /// The guest agent's handshake answer.
    pub fn agent(&self) -> Option<&AgentInfo> {
        self.agent.get()
    }

    fn disconnected(&self) -> Error {
        let reason = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closed
            .clone();
        Error::Disconnected {
            vm_id: self.vm_id.clone(),
            reason: reason.unwrap_or_else(|| "connection closed".into()),
        }
    }

    /// Sends a frame for a request already started (stdin, signal, resize). Stdin waits until
    /// the agent has room for it (flow control); stdin for a request that has ended is dropped.
    pub fn send_frame(&self, frame: &Frame) -> Result<()> {
        if frame.kind == FrameKind::Stdin && !frame.payload.is_empty() {
            let window = self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .waiters
                .get(&frame.id)
                .map(|w| Arc::clone(&w.input));
            match window {
                Some(window) if window.take(frame.payload.len()) => {}
                _ => return Ok(()),
            }
        }
        self.write(frame)
    }

    fn write(&self, frame: &Frame) -> Result<()> {
        let bytes = frame.encode().map_err(|source| Error::Protocol {
            vm_id: self.vm_id.clone(),
            source,
        })?;
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        writer.write_all(&bytes).map_err(|_| self.disconnected())
    }

    /// Starts a request whose frames are then read through the returned [`Call`].
    pub fn start(self: &Arc<Self>, kind: FrameKind, payload: Vec<u8>) -> Result<Call> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.closed.is_some() {
                drop(pending);
                return Err(self.disconnected());
            }
            pending.waiters.insert(
                id,
                Waiter {
                    frames: tx,
                    input: Arc::new(InputWindow::new()),
                },
            );
        }
        let call = Call {
            conn: Arc::clone(self),
            id,
            frames: rx,
            ungranted: AtomicU64::new(0),
        };
        self.write(&Frame::data(id, kind, payload))?;
        Ok(call)
    }

    /// Starts a JSON request.
    pub fn start_request(self: &Arc<Self>, request: &impl WireRequest) -> Result<Call> {
        let payload = serde_json::to_vec(request).map_err(|e| Error::Protocol {
            vm_id: self.vm_id.clone(),
            source: e.into(),
        })?;
        self.start(FrameKind::Request, payload)
    }

    /// Sends `request` and waits (up to `timeout`) for its response.
    pub fn call(
        self: &Arc<Self>,
        request: &impl WireRequest,
        timeout: Option<Duration>,
    ) -> Result<Response> {
        let call = self.start_request(request)?;
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            match call.next(deadline)? {
                Some(frame) if frame.kind == FrameKind::Response => {
                    return frame.to_response().map_err(|source| Error::Protocol {
                        vm_id: self.vm_id.clone(),
                        source,
                    })
                }
                Some(_) => continue,
                None => {
                    return Err(Error::Disconnected {
                        vm_id: self.vm_id.clone(),
                        reason: format!(
                            "no answer to {} within {:?}",
                            request.log_summary(),
                            timeout.unwrap_or_default()
                        ),
                    })
                }
            }
        }
    }

    /// One echo round trip of `payload` through the supervisor and the guest.
    pub fn echo(self: &Arc<Self>, payload: Vec<u8>) -> Result<Vec<u8>> {
        let call = self.start(FrameKind::Echo, payload)?;
        match call.next(Some(Instant::now() + Duration::from_secs(10)))? {
            Some(frame) => Ok(frame.payload),
            None => Err(Error::Disconnected {
                vm_id: self.vm_id.clone(),
                reason: "echo timed out".into(),
            }),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Wakes the reader thread so it ends.
        let _ = self
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown(std::net::Shutdown::Both);
    }
}

/// Delivers incoming frames to their waiters until the connection ends.
fn pump(stream: UnixStream, pending: &Mutex<Pending>) {
    let mut reader = BufReader::with_capacity(256 << 10, stream);
    let reason = loop {
        match read_frame(&mut reader) {
            Ok(Some(frame)) => {
                let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
                if frame.kind == FrameKind::Credit {
                    if let (Some(waiter), Ok(bytes)) =
                        (pending.waiters.get(&frame.id), frame.to_credit())
                    {
                        waiter.input.grant(bytes);
                    }
                    continue;
                }
                let last = matches!(frame.kind, FrameKind::Response | FrameKind::Echo);
                let waiter = if last {
                    pending.waiters.remove(&frame.id).map(|w| {
                        w.input.close();
                        w.frames
                    })
                } else {
                    pending.waiters.get(&frame.id).map(|w| w.frames.clone())
                };
                drop(pending);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(frame);
                }
            }
            Ok(None) => {
                break "the VM's supervisor closed the connection (the VM stopped)".to_string()
            }
            Err(e) => break format!("connection to the supervisor failed: {e}"),
        }
    };
    let mut pending = pending.lock().unwrap_or_else(|e| e.into_inner());
    pending.closed = Some(reason);
    for (_, waiter) in pending.waiters.drain() {
        waiter.input.close();
    }
}
