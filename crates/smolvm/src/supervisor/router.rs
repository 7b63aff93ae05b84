//! Multiplexing many clients over the one guest channel.
//!
//! Each client numbers its requests as it likes; the router gives every forwarded request a
//! channel-wide id, remembers whose it is, and sends the guest's frames back to that client
//! under the client's own id. Frames that end a request (`Response`, `Echo`) retire its route.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use smolvm_protocol::{read_frame, ErrorKind, Frame, FrameKind, Request, Response};

/// One connected client.
pub struct Client {
    /// Supervisor-wide number of this connection.
    pub id: u64,
    writer: Mutex<UnixStream>,
}

impl Client {
    /// A client writing to `stream`.
    pub fn new(id: u64, stream: UnixStream) -> Self {
        Self {
            id,
            writer: Mutex::new(stream),
        }
    }

    /// Sends a frame; errors mean the client left, which its reader thread handles.
    pub fn send(&self, frame: &Frame) {
        if let Ok(bytes) = frame.encode() {
            let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writer.write_all(&bytes);
        }
    }

    /// Sends the final response to the client's request `id`.
    pub fn respond(&self, id: u64, response: &Response) {
        if let Ok(frame) = Frame::response(id, response) {
            self.send(&frame);
        }
    }
}

enum Route {
    Client { client: Arc<Client>, id: u64 },
    Internal(Sender<Frame>),
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
        self.agent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(&bytes)
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
    pub fn request_internal(&self, request: &Request) -> Result<Receiver<Frame>, String> {
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
                    },
                );
                routes
                    .by_client_id
                    .insert((client.id, frame.id), channel_id);
                channel_id
            } else {
                // Stdin and signals follow a request already in flight; late ones are dropped.
                match routes.by_client_id.get(&(client.id, frame.id)) {
                    Some(&id) => id,
                    None => return,
                }
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
    /// stop them any more) and forget its ids.
    pub fn client_gone(&self, client_id: u64) {
        let orphaned: Vec<u64> = {
            let mut routes = self.routes();
            let keys: Vec<(u64, u64)> = routes
                .by_client_id
                .keys()
                .filter(|(c, _)| *c == client_id)
                .copied()
                .collect();
            keys.iter()
                .filter_map(|k| routes.by_client_id.remove(k))
                .collect()
        };
        for channel_id in orphaned {
            let _ = self.write_agent(&Frame::signal(channel_id, libc::SIGKILL));
        }
    }

    /// Reads the agent's frames and delivers them until the channel ends, then fails every
    /// request still in flight with `reason`-bearing errors.
    pub fn pump_from_agent(&self, mut reader: UnixStream) {
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
        let route = {
            let mut routes = self.routes();
            if is_final(frame.kind) {
                let route = routes.by_channel_id.remove(&frame.id);
                if let Some(Route::Client { client, id }) = &route {
                    routes.by_client_id.remove(&(client.id, *id));
                }
                route
            } else {
                match routes.by_channel_id.get(&frame.id) {
                    Some(Route::Client { client, id }) => Some(Route::Client {
                        client: Arc::clone(client),
                        id: *id,
                    }),
                    Some(Route::Internal(tx)) => Some(Route::Internal(tx.clone())),
                    None => None,
                }
            }
        };
        match route {
            Some(Route::Client { client, id }) => client.send(&Frame { id, ..frame }),
            Some(Route::Internal(tx)) => {
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
            if let Route::Client { client, id } = route {
                client.respond(
                    id,
                    &Response::error(ErrorKind::VmNotRunning, reason.clone()),
                );
            }
        }
        let _ = self
            .agent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shutdown(std::net::Shutdown::Both);
    }
}
