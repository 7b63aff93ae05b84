//! Multiplexing many clients over the one guest channel.
//!
//! Each client numbers its requests as it likes; the router gives every forwarded request a
//! channel-wide id, remembers whose it is, and sends the guest's frames back to that client
//! under the client's own id. Frames that end a request (`Response`, `Echo`) retire its route.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use smolvm_protocol::{
    read_frame, AgentRequest, ErrorKind, Frame, FrameKind, Response, OUTPUT_WINDOW,
};

/// How far behind a client may fall before it is disconnected. Per-request windows bound a
/// well-behaved VM's output to `OUTPUT_WINDOW` per request in flight, so only a client with
/// dozens of unread streams at once ever comes near it.
const CLIENT_QUEUE_LIMIT: usize = 256 << 20;
/// How long a write to the guest may block before the channel is declared broken (a guest
/// that stops reading must not hang the supervisor, its clients or a stop).
const AGENT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One connected client. Frames for it are queued and written by a thread of its own, so
/// that a client that stops reading never stalls the guest channel or the other clients.
pub struct Client {
    /// Supervisor-wide number of this connection.
    pub id: u64,
    queue: Arc<ClientQueue>,
}

#[derive(Default)]
struct QueueState {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    /// The client left (or fell too far behind): nothing more is queued.
    closed: bool,
}

struct ClientQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    stream: UnixStream,
}

impl ClientQueue {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops queueing and ends the connection (its reader then sees the end too).
    fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.frames.clear();
        state.bytes = 0;
        drop(state);
        self.ready.notify_all();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    /// Writes queued frames until the queue is closed and empty.
    fn write_loop(&self) {
        let mut writer = match self.stream.try_clone() {
            Ok(writer) => writer,
            Err(_) => return self.close(),
        };
        loop {
            let frame = {
                let mut state = self.state();
                loop {
                    if let Some(frame) = state.frames.pop_front() {
                        state.bytes -= frame.len();
                        break frame;
                    }
                    if state.closed {
                        return;
                    }
                    state = self.ready.wait(state).unwrap_or_else(|e| e.into_inner());
                }
            };
            if writer.write_all(&frame).is_err() {
                return self.close();
            }
        }
    }
}

impl Client {
    /// A client writing to `stream`, with its writer thread started.
    pub fn new(id: u64, stream: UnixStream) -> Self {
        let queue = Arc::new(ClientQueue {
            state: Mutex::default(),
            ready: Condvar::new(),
            stream,
        });
        let writer = Arc::clone(&queue);
        let started = std::thread::Builder::new()
            .name(format!("client-{id}-out"))
            .spawn(move || writer.write_loop());
        if started.is_err() {
            queue.close();
        }
        Self { id, queue }
    }

    /// Queues a frame; never blocks. A client too far behind is disconnected (its reader
    /// thread then cleans up after it).
    pub fn send(&self, frame: &Frame) {
        let Ok(bytes) = frame.encode() else { return };
        let mut state = self.queue.state();
        if state.closed {
            return;
        }
        if state.bytes + bytes.len() > CLIENT_QUEUE_LIMIT {
            drop(state);
            tracing::warn!(
                "client {} is more than {} MiB behind; disconnecting it",
                self.id,
                CLIENT_QUEUE_LIMIT >> 20
            );
            self.queue.close();
            return;
        }
        state.bytes += bytes.len();
        state.frames.push_back(bytes);
        drop(state);
        self.queue.ready.notify_one();
    }

    /// Sends the final response to the client's request `id`.
    pub fn respond(&self, id: u64, response: &Response) {
        if let Ok(frame) = Frame::response(id, response) {
            self.send(&frame);
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Let the writer flush what is queued, then end.
        self.queue.state().closed = true;
        self.queue.ready.notify_all();
    }
}

enum Route {
    Client {
        client: Arc<Client>,
        id: u64,
        flow: Flow,
    },
    Internal(Sender<Frame>),
}

/// What the guest may still send on a route, and what it may still credit.
struct Flow {
    /// Output bytes the client has room for (see `OUTPUT_WINDOW`).
    output_budget: i64,
    /// Input bytes sent to the agent and not yet credited back.
    input_outstanding: u64,
}

impl Flow {
    fn new() -> Self {
        Self {
            output_budget: i64::from(OUTPUT_WINDOW),
            input_outstanding: 0,
        }
    }
}

#[derive(Default)]
struct Routes {
    by_channel_id: HashMap<u64, Route>,
    by_client_id: HashMap<(u64, u64), u64>,
    /// Set once the guest channel is gone; new requests are refused with it.
    closed: Option<String>,
}

/// Routes frames between clients and the guest agent.
pub struct Router {
    agent: Mutex<UnixStream>,
    routes: Mutex<Routes>,
    next_id: AtomicU64,
}

/// Frames that end a request.
fn is_final(kind: FrameKind) -> bool {
    matches!(kind, FrameKind::Response | FrameKind::Echo)
}

impl Router {
    /// A router writing to the agent over `agent`.
    pub fn new(agent: UnixStream) -> Self {
        Self::with_write_timeout(agent, AGENT_WRITE_TIMEOUT)
    }

    /// [`Router::new`] with another limit on a write to the guest.
    pub fn with_write_timeout(agent: UnixStream, timeout: Duration) -> Self {
        // A guest that stops reading must not block writers for ever.
        let _ = agent.set_write_timeout(Some(timeout));
        Self {
            agent: Mutex::new(agent),
            routes: Mutex::default(),
            next_id: AtomicU64::new(1),
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_agent(&self, frame: &Frame) -> std::io::Result<()> {
        let bytes = frame
            .encode()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        let written = self
            .agent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(&bytes);
        if let Err(e) = &written {
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) {
                // The stream may now end mid-frame: it cannot be used again.
                self.close(
                    "the guest stopped reading its channel (a write made no progress)".into(),
                );
            }
        }
        written
    }

    /// Why the channel closed, if it did.
    pub fn closed_reason(&self) -> Option<String> {
        self.routes().closed.clone()
    }

    /// Sends a supervisor-originated frame to the agent; frames for its id come back on the
    /// returned receiver until the final one.
    pub fn send_internal(
        &self,
        kind: FrameKind,
        payload: Vec<u8>,
    ) -> Result<Receiver<Frame>, String> {
        let (tx, rx) = mpsc::channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut routes = self.routes();
            if let Some(reason) = &routes.closed {
                return Err(reason.clone());
            }
            routes.by_channel_id.insert(id, Route::Internal(tx));
        }
        self.write_agent(&Frame::data(id, kind, payload))
            .map_err(|e| {
                self.routes().by_channel_id.remove(&id);
                format!("guest channel write failed: {e}")
            })?;
        Ok(rx)
    }

    /// Sends a supervisor-originated request to the agent.
    pub fn request_internal(&self, request: &AgentRequest) -> Result<Receiver<Frame>, String> {
        let payload = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        self.send_internal(FrameKind::Request, payload)
    }

    /// Forwards a client's frame to the agent, translating its id.
    pub fn forward(&self, client: &Arc<Client>, frame: Frame) {
        let starts_request = matches!(frame.kind, FrameKind::Request | FrameKind::Echo);
        let channel_id = {
            let mut routes = self.routes();
            if starts_request {
                if let Some(reason) = routes.closed.clone() {
                    drop(routes);
                    client.respond(frame.id, &Response::error(ErrorKind::VmNotRunning, reason));
                    return;
                }
                let channel_id = self.next_id.fetch_add(1, Ordering::Relaxed);
                routes.by_channel_id.insert(
                    channel_id,
                    Route::Client {
                        client: Arc::clone(client),
                        id: frame.id,
                        flow: Flow::new(),
                    },
                );
                routes
                    .by_client_id
                    .insert((client.id, frame.id), channel_id);
                channel_id
            } else {
                // Stdin, credit and signals follow a request already in flight; late ones
                // are dropped.
                let Some(&channel_id) = routes.by_client_id.get(&(client.id, frame.id)) else {
                    return;
                };
                if let Some(Route::Client { flow, .. }) = routes.by_channel_id.get_mut(&channel_id)
                {
                    match frame.kind {
                        FrameKind::Credit => {
                            flow.output_budget += i64::from(frame.to_credit().unwrap_or(0));
                        }
                        FrameKind::Stdin => flow.input_outstanding += frame.payload.len() as u64,
                        _ => {}
                    }
                }
                channel_id
            }
        };
        if let Err(e) = self.write_agent(&Frame {
            id: channel_id,
            ..frame
        }) {
            tracing::warn!("guest channel write failed: {e}");
        }
    }

    /// A client left: kill the commands it still had running (nobody can read their output or
    /// stop them any more) and forget its routes, so that nothing keeps its connection open.
    pub fn client_gone(&self, client_id: u64) {
        let orphaned: Vec<u64> = {
            let mut routes = self.routes();
            let keys: Vec<(u64, u64)> = routes
                .by_client_id
                .keys()
                .filter(|(c, _)| *c == client_id)
                .copied()
                .collect();
            let ids: Vec<u64> = keys
                .iter()
                .filter_map(|k| routes.by_client_id.remove(k))
                .collect();
            for id in &ids {
                routes.by_channel_id.remove(id);
            }
            ids
        };
        for channel_id in orphaned {
            let _ = self.write_agent(&Frame::signal(channel_id, libc::SIGKILL));
        }
    }

    /// How many requests are in flight.
    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.routes().by_channel_id.len()
    }

    /// Reads the agent's frames and delivers them until the channel ends, then fails every
    /// request still in flight with `reason`-bearing errors.
    pub fn pump_from_agent(&self, reader: UnixStream) {
        let mut reader = std::io::BufReader::with_capacity(256 << 10, reader);
        let reason = loop {
            match read_frame(&mut reader) {
                Ok(Some(frame)) => self.deliver(frame),
                Ok(None) => break "the VM stopped (guest channel closed)".to_string(),
                Err(e) => break format!("the guest channel failed: {e}"),
            }
        };
        self.close(reason);
    }

    fn deliver(&self, frame: Frame) {
        let mut violation = None;
        let route = {
            let mut routes = self.routes();
            if is_final(frame.kind) {
                let route = routes.by_channel_id.remove(&frame.id);
                if let Some(Route::Client { client, id, .. }) = &route {
                    routes.by_client_id.remove(&(client.id, *id));
                }
                route.map(|r| match r {
                    Route::Client { client, id, .. } => Delivery::Client(client, id),
                    Route::Internal(tx) => Delivery::Internal(tx),
                })
            } else {
                match routes.by_channel_id.get_mut(&frame.id) {
                    Some(Route::Client { client, id, flow }) => match check_flow(flow, &frame) {
                        FlowCheck::Deliver => Some(Delivery::Client(Arc::clone(client), *id)),
                        FlowCheck::Drop => None,
                        FlowCheck::Violation(why) => {
                            violation = Some((Arc::clone(client), *id, why));
                            None
                        }
                    },
                    // The supervisor's own requests produce no data.
                    Some(Route::Internal(tx)) if !is_data(frame.kind) => {
                        Some(Delivery::Internal(tx.clone()))
                    }
                    _ => None,
                }
            }
        };
        if let Some((client, id, why)) = violation {
            // The guest broke the protocol on this request: fail it (only it) and stop it.
            tracing::warn!("request {id} of client {}: {why}", client.id);
            {
                let mut routes = self.routes();
                routes.by_channel_id.remove(&frame.id);
                routes.by_client_id.remove(&(client.id, id));
            }
            let _ = self.write_agent(&Frame::signal(frame.id, libc::SIGKILL));
            client.respond(id, &Response::error(ErrorKind::Internal, why));
            return;
        }
        match route {
            Some(Delivery::Client(client, id)) => client.send(&Frame { id, ..frame }),
            Some(Delivery::Internal(tx)) => {
                let _ = tx.send(frame);
            }
            None => {}
        }
    }

    /// Marks the channel closed and fails every request in flight.
    pub fn close(&self, reason: String) {
        let routes = {
            let mut routes = self.routes();
            if routes.closed.is_none() {
                routes.closed = Some(reason.clone());
            }
            routes.by_client_id.clear();
            std::mem::take(&mut routes.by_channel_id)
        };
        for route in routes.into_values() {
            if let Route::Client { client, id, .. } = route {
                client.respond(
                    id,
                    &Response::error(ErrorKind::VmNotRunning, reason.clone()),
                );
            }
        }
        // try_lock: a writer blocked on a guest that stopped reading holds the lock; its
        // timeout ends that write anyway.
        if let Ok(agent) = self.agent.try_lock() {
            let _ = agent.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Where a frame from the agent goes.
enum Delivery {
    Client(Arc<Client>, u64),
    Internal(Sender<Frame>),
}

/// Frames that carry a request's data (and so count against its window).
fn is_data(kind: FrameKind) -> bool {
    matches!(
        kind,
        FrameKind::Stdout | FrameKind::Stderr | FrameKind::Credit
    )
}

enum FlowCheck {
    Deliver,
    /// Harmless but meaningless (credit for input never sent).
    Drop,
    Violation(String),
}

/// Applies a guest frame to its route's flow accounting.
fn check_flow(flow: &mut Flow, frame: &Frame) -> FlowCheck {
    match frame.kind {
        FrameKind::Stdout | FrameKind::Stderr => {
            flow.output_budget -= frame.payload.len() as i64;
            if flow.output_budget < 0 {
                FlowCheck::Violation(
                    "the guest sent more output than the client had room for (flow control \
                     violated); the request was stopped"
                        .into(),
                )
            } else {
                FlowCheck::Deliver
            }
        }
        FrameKind::Credit => match frame.to_credit() {
            Ok(bytes) if u64::from(bytes) <= flow.input_outstanding => {
                flow.input_outstanding -= u64::from(bytes);
                FlowCheck::Deliver
            }
            _ => FlowCheck::Drop,
        },
        _ => FlowCheck::Deliver,
    }
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
