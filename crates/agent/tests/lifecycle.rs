//! The handshake, what host mode leaves alone on the host, malformed input, and how a
//! host-mode agent ends.

mod common;

use std::process::Command;

use common::{hello, Agent};
use smolvm_protocol::{
    AgentRequest, ErrorKind, ExecRequest, Frame, FrameKind, GuestIdentity, Response,
    PROTOCOL_VERSION,
};

#[test]
fn hello_answers_with_the_version_and_the_host_mode_capability() {
    let mut agent = Agent::spawn();
    let Response::Hello(info) = agent.call(&hello(PROTOCOL_VERSION)) else {
        panic!("no hello");
    };
    assert_eq!(info.protocol, PROTOCOL_VERSION);
    assert_eq!(info.agent_version, env!("CARGO_PKG_VERSION"));
    for capability in ["exec", "env", "files", smolvm_agent::HOST_MODE_CAPABILITY] {
        assert!(
            info.capabilities.iter().any(|c| c == capability),
            "{capability} missing from {:?}",
            info.capabilities
        );
    }
    // Uptime is the agent's own, not the host's since boot.
    assert!(info.uptime_ms < 60_000, "{}", info.uptime_ms);
}

#[test]
fn a_hello_with_another_protocol_version_is_refused() {
    let mut agent = Agent::spawn();
    let other = PROTOCOL_VERSION + 1;
    match agent.call(&hello(other)) {
        Response::Error { kind, message } => {
            assert_eq!(kind, ErrorKind::InvalidRequest);
            assert!(
                message.contains(&other.to_string())
                    && message.contains(&PROTOCOL_VERSION.to_string()),
                "{message}"
            );
        }
        other => panic!("a mismatched hello was accepted: {other:?}"),
    }
    // The connection stays usable for a correct handshake.
    assert!(matches!(
        agent.call(&hello(PROTOCOL_VERSION)),
        Response::Hello(_)
    ));
}

fn host_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default()
}

#[test]
fn clock_and_identity_go_to_the_state_dir_not_the_host() {
    let hostname_before = host_hostname();
    let machine_id_before = std::fs::read("/etc/machine-id").ok();
    let mut agent = Agent::spawn();
    // The current time: even an agent that wrongly stepped the clock would change nothing.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let machine_id = "0123456789abcdef0123456789abcdef";
    let response = agent.call(&AgentRequest::Hello {
        protocol: PROTOCOL_VERSION,
        host_time_ns: Some(now_ns),
        identity: Some(GuestIdentity {
            hostname: "smolvm-host-mode-test".into(),
            machine_id: machine_id.into(),
            seed: "00112233445566778899aabbccddeeff".into(),
        }),
    });
    assert!(matches!(response, Response::Hello(_)), "{response:?}");
    let state = agent.state.path().to_path_buf();
    let read = |rel: &str| std::fs::read_to_string(state.join(rel)).unwrap_or_default();
    assert_eq!(read("host-time-ns"), format!("{now_ns}\n"));
    assert_eq!(read("etc/hostname"), "smolvm-host-mode-test\n");
    assert_eq!(read("etc/machine-id"), format!("{machine_id}\n"));
    assert_eq!(host_hostname(), hostname_before);
    assert_eq!(std::fs::read("/etc/machine-id").ok(), machine_id_before);
    let (status, stderr) = agent.close();
    assert!(status.success(), "{status:?}: {stderr}");
    // No attempt was made on the host's clock, hostname or RNG (each logs when it fails).
    for attempt in ["clock", "hostname", "RNG", "/etc/"] {
        assert!(!stderr.contains(attempt), "{attempt}: {stderr}");
    }
}

#[test]
fn malformed_requests_get_errors_and_serving_goes_on() {
    let mut agent = Agent::start();
    for payload in [&b"{not json"[..], br#"{"op":"no_such_op"}"#, b""] {
        let id = agent.id();
        agent.send(&Frame::data(id, FrameKind::Request, payload.to_vec()));
        match agent.collect(id, true).response {
            Response::Error { kind, .. } => assert_eq!(kind, ErrorKind::InvalidRequest),
            other => panic!("{payload:?} was answered with {other:?}"),
        }
    }
    // Requests only the supervisor answers are not even parsed by the agent.
    for op in smolvm_protocol::SupervisorRequest::OPS {
        let id = agent.id();
        let payload = format!(r#"{{"op":"{op}"}}"#).into_bytes();
        agent.send(&Frame::data(id, FrameKind::Request, payload));
        match agent.collect(id, true).response {
            Response::Error { kind, .. } => assert_eq!(kind, ErrorKind::InvalidRequest),
            other => panic!("{op} was answered with {other:?}"),
        }
    }
    // Control frames with the wrong payload size, frames only the agent sends, and frames
    // for unknown requests are ignored.
    agent.send(&Frame::data(99, FrameKind::Signal, vec![1, 2, 3]));
    agent.send(&Frame::data(99, FrameKind::Credit, vec![1]));
    agent.send(&Frame::data(99, FrameKind::Resize, vec![]));
    agent.send(&Frame::data(99, FrameKind::Stdout, b"x".to_vec()));
    agent.send(&Frame::data(99, FrameKind::Response, b"{}".to_vec()));
    agent.send(&Frame::data(99, FrameKind::Stdin, b"x".to_vec()));
    agent.send(&Frame::signal(99, libc::SIGKILL));
    // Still serving: an echo comes back unchanged, and commands run.
    agent.send(&Frame::data(7, FrameKind::Echo, vec![0, 1, 255]));
    let echo = agent.frame();
    assert_eq!(echo, Frame::data(7, FrameKind::Echo, vec![0, 1, 255]));
    assert_eq!(agent.sh("echo alive").out(), "alive\n");
}

#[test]
fn an_unparseable_frame_ends_the_agent_cleanly() {
    let mut agent = Agent::start();
    // A frame of unknown kind: the stream position is lost, so the agent stops serving.
    let mut wire = Frame::data(1, FrameKind::Echo, vec![]).encode().unwrap();
    wire[12] = 200;
    agent.send_raw(&wire);
    let (status, stderr) = agent.wait();
    assert_eq!(status.code(), Some(1), "{status:?}: {stderr}");
    assert!(stderr.contains("channel error"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn shutdown_ends_the_process_and_its_commands() {
    let mut agent = Agent::start();
    let id = agent.request(&AgentRequest::Exec(ExecRequest {
        command: "echo $$; exec sleep 30".into(),
        ..ExecRequest::default()
    }));
    let first = agent.frame();
    assert_eq!((first.id, first.kind), (id, FrameKind::Stdout));
    let pid: u32 = String::from_utf8_lossy(&first.payload)
        .trim()
        .parse()
        .unwrap();
    assert!(!common::is_dead(pid));
    let shutdown = agent.request(&AgentRequest::Shutdown);
    // The answer comes first; the command's own answer may follow before the agent exits.
    let answer = agent.frame();
    assert_eq!(answer.id, shutdown, "{answer:?}");
    assert_eq!(answer.to_response().unwrap(), Response::Ok);
    let (status, stderr) = agent.wait();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(common::wait_dead(pid), "the command outlived the agent");
}

#[test]
fn closing_the_channel_ends_the_process_and_its_commands() {
    let mut agent = Agent::start();
    let id = agent.request(&AgentRequest::Exec(ExecRequest {
        command: "echo $$; exec sleep 30".into(),
        ..ExecRequest::default()
    }));
    let first = agent.frame();
    assert_eq!(first.id, id);
    let pid: u32 = String::from_utf8_lossy(&first.payload)
        .trim()
        .parse()
        .unwrap();
    let (status, stderr) = agent.close();
    assert!(status.success(), "{status:?}: {stderr}");
    assert!(common::wait_dead(pid), "the command outlived the agent");
}

#[test]
fn bad_command_lines_are_refused() {
    let agent = env!("CARGO_BIN_EXE_smolvm-agent");
    for args in [
        &["--host-mode"][..],
        &["--channel-fd", "3", "--state-dir", "/tmp/x"],
        // Descriptor 50 is not open in the child.
        &["--host-mode", "--channel-fd", "50", "--state-dir", "/tmp/x"],
        &[
            "--host-mode",
            "--channel-fd",
            "4",
            "--state-dir",
            "/tmp/x",
            "--extra",
        ],
    ] {
        let output = Command::new(agent).args(args).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(!output.stderr.is_empty());
    }
}

#[test]
fn run_host_mode_refuses_a_process_with_other_threads() {
    // The test harness has threads: the reaper must not start here (nor serve).
    let _other = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(2)));
    let dir = common::TempDir::new("threads");
    let options = smolvm_agent::Options::host(dir.path()).unwrap();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(ours);
    let code = smolvm_agent::run_host_mode(theirs, &options);
    assert_eq!(code, std::process::ExitCode::FAILURE);
}
