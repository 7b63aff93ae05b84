//! The supervisor's API socket: one thread per client connection.

use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use smolvm_protocol::{
    read_frame, AgentRequest, ErrorKind, FrameKind, Request, Response, SupervisorRequest,
    PROTOCOL_VERSION,
};

use super::accept;
use super::router::Client;
use super::{channel_bench, snapshot, status_of, Supervisor};

/// Accepts clients until the listener fails (the supervisor exits with the VM). Who may
/// connect, how many at once and the back-off on `EMFILE` are in [`super::accept`].
pub(crate) fn accept_clients(supervisor: &Arc<Supervisor>, listener: UnixListener) {
    let next_client = AtomicU64::new(1);
    let end = accept::accept_loop(&listener, accept::MAX_CLIENTS, |stream, slot| {
        let id = next_client.fetch_add(1, Ordering::Relaxed);
        let supervisor = Arc::clone(supervisor);
        let spawned = std::thread::Builder::new()
            .name(format!("client-{id}"))
            .spawn(move || {
                serve_client(&supervisor, id, stream);
                drop(slot);
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot serve API client {id}: {e}");
        }
    });
    tracing::error!("the API socket failed: {end}");
}

fn serve_client(supervisor: &Arc<Supervisor>, id: u64, stream: UnixStream) {
    let Ok(writer) = stream.try_clone() else {
        return;
    };
    let client = Arc::new(Client::new(id, writer));
    let mut reader = std::io::BufReader::with_capacity(256 << 10, stream);
    while let Ok(Some(frame)) = read_frame(&mut reader) {
        if frame.kind != FrameKind::Request {
            supervisor.router.forward(&client, frame);
            continue;
        }
        let request = match frame.to_request() {
            Ok(request) => request,
            Err(e) => {
                client.respond(
                    frame.id,
                    &Response::error(ErrorKind::InvalidRequest, e.to_string()),
                );
                continue;
            }
        };
        tracing::debug!("client {id}: {}", request.log_summary());
        let response = match request {
            Request::Supervisor(request) => answer(supervisor, request),
            Request::Agent(AgentRequest::Hello { protocol, .. }) => hello(supervisor, protocol),
            Request::Agent(AgentRequest::Shutdown) => {
                // A bare guest shutdown would leave the supervisor thinking the VM crashed:
                // route it through the stop path with a default grace.
                supervisor.begin_stop(Duration::from_secs(5));
                Response::Ok
            }
            Request::Agent(_) => match refusal(supervisor) {
                Some(refused) => refused,
                None => {
                    supervisor.router.forward(&client, frame);
                    continue;
                }
            },
        };
        client.respond(frame.id, &response);
    }
    supervisor.router.client_gone(id);
}

/// Answers a supervisor request.
fn answer(supervisor: &Arc<Supervisor>, request: SupervisorRequest) -> Response {
    match request {
        SupervisorRequest::Status => status_of(supervisor),
        SupervisorRequest::Stop { grace_ms } => {
            supervisor.begin_stop(Duration::from_millis(grace_ms));
            Response::Ok
        }
        SupervisorRequest::Pause => snapshot::pause(supervisor),
        SupervisorRequest::Resume => snapshot::resume(supervisor),
        SupervisorRequest::Snapshot {
            dir,
            keep_paused,
            meta,
        } => snapshot::snapshot(supervisor, &dir, keep_paused, meta),
        SupervisorRequest::ChannelBench { rounds, size } => channel_bench(supervisor, rounds, size),
    }
}

/// Answers a client's handshake with the agent's (the agent's own was made at boot).
fn hello(supervisor: &Supervisor, protocol: u32) -> Response {
    if protocol != PROTOCOL_VERSION {
        Response::error(
            ErrorKind::InvalidRequest,
            format!("client speaks protocol {protocol}, supervisor speaks {PROTOCOL_VERSION}"),
        )
    } else if let Some(reason) = supervisor.router.closed_reason() {
        // The VM just ended and this supervisor is on its way out.
        Response::error(ErrorKind::VmNotRunning, reason)
    } else {
        match supervisor.agent.get() {
            Some(info) => Response::Hello(info.clone()),
            None => Response::error(ErrorKind::VmNotRunning, "the VM is still booting"),
        }
    }
}

/// Why an agent request cannot go to the guest now, if it cannot.
fn refusal(supervisor: &Supervisor) -> Option<Response> {
    if supervisor.stopping.load(Ordering::SeqCst) {
        let message = format!("VM {} is stopping", supervisor.vm_id);
        Some(Response::error(ErrorKind::VmNotRunning, message))
    } else if supervisor.paused.load(Ordering::SeqCst) {
        let message = format!(
            "VM {} is paused; resume it first (`smolvm resume {}`)",
            supervisor.vm_id, supervisor.vm_id
        );
        Some(Response::error(ErrorKind::Paused, message))
    } else {
        None
    }
}
