//! The router against a fake, hostile guest on a socket pair: no QEMU, no VM.

use std::io::BufReader;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smolvm_protocol::{
    read_frame, write_frame, AgentRequest, ExecRequest, Frame, FrameKind, Response,
};
use smolvm_protocol::{ErrorKind, OUTPUT_WINDOW};

use super::{Client, Router};

/// A router whose agent end the test holds, with the pump running.
fn router() -> (Arc<Router>, UnixStream) {
    router_with_timeout(Duration::from_secs(10))
}

fn router_with_timeout(timeout: Duration) -> (Arc<Router>, UnixStream) {
    let (ours, agent) = UnixStream::pair().unwrap();
    let router = Arc::new(Router::with_write_timeout(
        ours.try_clone().unwrap(),
        timeout,
    ));
    let pump = Arc::clone(&router);
    std::thread::spawn(move || pump.pump_from_agent(ours));
    (router, agent)
}

/// A client of the router and the test's end of its connection.
fn client(id: u64) -> (Arc<Client>, BufReader<UnixStream>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    theirs
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (Arc::new(Client::new(id, ours)), BufReader::new(theirs))
}

fn exec_frame(id: u64) -> Frame {
    Frame::request(
        id,
        &AgentRequest::Exec(ExecRequest {
            command: "true".into(),
            ..ExecRequest::default()
        }),
    )
    .unwrap()
}

/// Reads frames on the fake agent's end until one of `kind` arrives.
fn agent_reads(agent: &mut UnixStream, kind: FrameKind) -> Frame {
    agent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    loop {
        let frame = read_frame(agent).unwrap().expect("frame");
        if frame.kind == kind {
            return frame;
        }
    }
}

fn response_of(reader: &mut BufReader<UnixStream>) -> (u64, Response) {
    loop {
        let frame = read_frame(reader).unwrap().expect("frame");
        if frame.kind == FrameKind::Response {
            return (frame.id, frame.to_response().unwrap());
        }
    }
}

#[test]
fn a_client_that_stops_reading_stalls_nobody() {
    let (router, mut agent) = router();
    let (slow, _slow_end_never_read) = client(1);
    let (fast, mut fast_end) = client(2);
    router.forward(&slow, exec_frame(7));
    let slow_channel_id = agent_reads(&mut agent, FrameKind::Request).id;
    // The whole window of output for the client that never reads: more than its socket
    // buffer holds, so its writer blocks — and only its writer.
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..(OUTPUT_WINDOW as usize / chunk.len()) {
        write_frame(
            &mut agent,
            &Frame::data(slow_channel_id, FrameKind::Stdout, chunk.clone()),
        )
        .unwrap();
    }
    let started = Instant::now();
    router.forward(&fast, exec_frame(1));
    let fast_channel_id = agent_reads(&mut agent, FrameKind::Request).id;
    write_frame(
        &mut agent,
        &Frame::response(fast_channel_id, &Response::Ok).unwrap(),
    )
    .unwrap();
    assert_eq!(response_of(&mut fast_end), (1, Response::Ok));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn output_beyond_the_window_fails_only_that_request() {
    let (router, mut agent) = router();
    let (client, mut end) = client(1);
    router.forward(&client, exec_frame(1));
    let flooded = agent_reads(&mut agent, FrameKind::Request).id;
    router.forward(&client, exec_frame(2));
    let other = agent_reads(&mut agent, FrameKind::Request).id;
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..=(OUTPUT_WINDOW as usize / chunk.len()) {
        write_frame(
            &mut agent,
            &Frame::data(flooded, FrameKind::Stdout, chunk.clone()),
        )
        .unwrap();
    }
    // The flooded request is failed and its command killed...
    let signal = agent_reads(&mut agent, FrameKind::Signal);
    assert_eq!(
        (signal.id, signal.to_signal().unwrap()),
        (flooded, libc::SIGKILL)
    );
    let (id, response) = loop {
        let frame = read_frame(&mut end).unwrap().unwrap();
        if frame.kind == FrameKind::Response {
            break (frame.id, frame.to_response().unwrap());
        }
        assert_eq!(frame.id, 1, "output of the flooded request only");
    };
    assert_eq!(id, 1);
    assert!(
        matches!(&response, Response::Error { kind: ErrorKind::Internal, message } if message.contains("flow control")),
        "{response:?}"
    );
    // ...while the other request on the same client goes on.
    write_frame(
        &mut agent,
        &Frame::data(other, FrameKind::Stdout, b"hi".to_vec()),
    )
    .unwrap();
    write_frame(&mut agent, &Frame::response(other, &Response::Ok).unwrap()).unwrap();
    let frame = read_frame(&mut end).unwrap().unwrap();
    assert_eq!((frame.id, frame.payload.as_slice()), (2, &b"hi"[..]));
    assert_eq!(response_of(&mut end), (2, Response::Ok));
}

#[test]
fn credit_from_the_client_extends_the_window() {
    let (router, mut agent) = router();
    let (client, mut end) = client(1);
    router.forward(&client, exec_frame(1));
    let id = agent_reads(&mut agent, FrameKind::Request).id;
    router.forward(&client, Frame::credit(1, OUTPUT_WINDOW));
    let credit = agent_reads(&mut agent, FrameKind::Credit);
    assert_eq!(
        (credit.id, credit.to_credit().unwrap()),
        (id, OUTPUT_WINDOW)
    );
    // Twice the initial window is now within bounds.
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..(2 * OUTPUT_WINDOW as usize / chunk.len()) {
        write_frame(
            &mut agent,
            &Frame::data(id, FrameKind::Stdout, chunk.clone()),
        )
        .unwrap();
    }
    write_frame(&mut agent, &Frame::response(id, &Response::Ok).unwrap()).unwrap();
    let mut bytes = 0;
    loop {
        let frame = read_frame(&mut end).unwrap().unwrap();
        match frame.kind {
            FrameKind::Stdout => bytes += frame.payload.len(),
            FrameKind::Response => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(bytes, 2 * OUTPUT_WINDOW as usize);
}

#[test]
fn a_departed_client_leaves_no_route_and_no_connection() {
    let (router, mut agent) = router();
    let (client, end) = client(1);
    router.forward(&client, exec_frame(1));
    let id = agent_reads(&mut agent, FrameKind::Request).id;
    drop(end);
    router.client_gone(1);
    // Its command is killed and the router keeps nothing of it.
    let signal = agent_reads(&mut agent, FrameKind::Signal);
    assert_eq!(signal.id, id);
    assert_eq!(router.in_flight(), 0);
    assert_eq!(
        Arc::strong_count(&client),
        1,
        "the router still holds the client"
    );
    // Late output and answers for it go nowhere.
    write_frame(
        &mut agent,
        &Frame::data(id, FrameKind::Stdout, b"late".to_vec()),
    )
    .unwrap();
    write_frame(&mut agent, &Frame::response(id, &Response::Ok).unwrap()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(router.in_flight(), 0);
}

#[test]
fn guest_credit_for_input_never_sent_is_dropped() {
    let (router, mut agent) = router();
    let (client, mut end) = client(1);
    router.forward(&client, exec_frame(1));
    let id = agent_reads(&mut agent, FrameKind::Request).id;
    router.forward(&client, Frame::data(1, FrameKind::Stdin, vec![0; 100]));
    agent_reads(&mut agent, FrameKind::Stdin);
    write_frame(&mut agent, &Frame::credit(id, 1 << 30)).unwrap();
    write_frame(&mut agent, &Frame::credit(id, 100)).unwrap();
    write_frame(&mut agent, &Frame::response(id, &Response::Ok).unwrap()).unwrap();
    let first = read_frame(&mut end).unwrap().unwrap();
    assert_eq!(first.kind, FrameKind::Credit);
    assert_eq!(
        first.to_credit().unwrap(),
        100,
        "the inflated credit was dropped"
    );
    assert_eq!(response_of(&mut end), (1, Response::Ok));
}

#[test]
fn a_guest_that_stops_reading_fails_requests_instead_of_hanging() {
    let (router, _agent_never_reads) = router_with_timeout(Duration::from_millis(300));
    let (client, mut end) = client(1);
    router.forward(&client, exec_frame(1));
    let started = Instant::now();
    // Far more stdin than the socket buffers hold: the writes must give up, not block.
    for _ in 0..64 {
        router.forward(&client, Frame::data(1, FrameKind::Stdin, vec![0; 1 << 20]));
        if router.closed_reason().is_some() {
            break;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(router.closed_reason().is_some());
    let (id, response) = response_of(&mut end);
    assert_eq!(id, 1);
    assert!(
        matches!(
            response,
            Response::Error {
                kind: ErrorKind::VmNotRunning,
                ..
            }
        ),
        "{response:?}"
    );
    // New requests are refused at once.
    router.forward(&client, exec_frame(2));
    assert!(matches!(response_of(&mut end), (2, Response::Error { .. })));
}

#[test]
fn supervisor_requests_ignore_guest_data() {
    let (router, mut agent) = router();
    let replies = router.request_internal(&AgentRequest::EnvList).unwrap();
    let id = agent_reads(&mut agent, FrameKind::Request).id;
    write_frame(
        &mut agent,
        &Frame::data(id, FrameKind::Stdout, vec![0; 1 << 20]),
    )
    .unwrap();
    write_frame(&mut agent, &Frame::response(id, &Response::Ok).unwrap()).unwrap();
    let frame = replies.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(frame.kind, FrameKind::Response);
}
