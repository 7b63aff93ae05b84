//! Commands: output, exit codes, stdin, timeouts, signals and output flow control, driven
//! over the agent's channel in host mode.

mod common;

use std::time::{Duration, Instant};

use common::{Agent, TempDir};
use smolvm_protocol::{AgentRequest, ExecRequest, Frame, FrameKind, Response, OUTPUT_WINDOW};

#[test]
fn exec_reports_stdout_stderr_and_the_exit_code() {
    let mut agent = Agent::start();
    let output = agent.sh("echo out; echo err >&2; printf 'no newline'; exit 3");
    assert_eq!(output.out(), "out\nno newline");
    assert_eq!(output.err(), "err\n");
    let status = output.exited();
    assert_eq!(
        (status.code, status.signal, status.timed_out),
        (Some(3), None, false)
    );
    assert_eq!(agent.sh("true").exited().code, Some(0));
}

#[test]
fn commands_start_in_the_state_home_unless_told_otherwise() {
    let mut agent = Agent::start();
    let home = agent.state.path().join("home");
    let output = agent.sh_raw("pwd; echo \"$HOME\"");
    let expected = format!("{0}\n{0}\n", home.display());
    assert_eq!(output.out(), expected);

    let dir = TempDir::new("cwd");
    let output = agent.exec(ExecRequest {
        command: "pwd".into(),
        cwd: Some(dir.path().to_string_lossy().into_owned()),
        ..ExecRequest::default()
    });
    assert_eq!(output.out().trim_end(), dir.path().to_string_lossy());

    let output = agent.exec(ExecRequest {
        command: "pwd".into(),
        cwd: Some("/no/such/dir".into()),
        ..ExecRequest::default()
    });
    assert!(
        matches!(&output.response, Response::Error { message, .. } if message.contains("/no/such/dir")),
        "{output:?}"
    );
}

#[test]
fn per_command_variables_reach_the_command() {
    let mut agent = Agent::start();
    let output = agent.exec(ExecRequest {
        command: "printf '%s' \"$GREETING\"".into(),
        env: common::vars(&[("GREETING", "hello 'quoted' world")]),
        ..ExecRequest::default()
    });
    assert_eq!(output.out(), "hello 'quoted' world");
}

#[test]
fn stdin_frames_reach_the_command_and_an_empty_one_closes_it() {
    let mut agent = Agent::start();
    let id = agent.request(&AgentRequest::Exec(ExecRequest {
        command: "cat; echo done".into(),
        stdin: true,
        ..ExecRequest::default()
    }));
    agent.send(&Frame::data(id, FrameKind::Stdin, b"hello\n".to_vec()));
    agent.send(&Frame::data(id, FrameKind::Stdin, b"world\n".to_vec()));
    agent.send(&Frame::data(id, FrameKind::Stdin, Vec::new()));
    let output = agent.collect(id, true);
    assert_eq!(output.out(), "hello\nworld\ndone\n");
    assert_eq!(output.exited().code, Some(0));

    // Without `stdin`, the command reads /dev/null: it never waits for input.
    let output = agent.sh("cat; echo eof");
    assert_eq!(output.out(), "eof\n");
}

#[test]
fn a_timeout_kills_the_command() {
    let mut agent = Agent::start();
    let started = Instant::now();
    let output = agent.exec(ExecRequest {
        command: "echo started; sleep 30".into(),
        timeout_ms: Some(300),
        ..ExecRequest::default()
    });
    let status = output.exited();
    assert!(status.timed_out, "{status:?}");
    assert_eq!(status.signal, Some(libc::SIGKILL));
    assert_eq!(output.out(), "started\n");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_signal_frame_reaches_the_command() {
    let mut agent = Agent::start();
    let id = agent.request(&AgentRequest::Exec(ExecRequest {
        command: "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done"
            .into(),
        ..ExecRequest::default()
    }));
    let ready = agent.frame();
    assert_eq!((ready.id, ready.kind), (id, FrameKind::Stdout));
    assert_eq!(ready.payload, b"ready\n");
    agent.send(&Frame::credit(id, ready.payload.len() as u32));
    agent.send(&Frame::signal(id, libc::SIGTERM));
    let output = agent.collect(id, true);
    assert_eq!(output.out(), "got TERM\n");
    assert_eq!(output.exited().code, Some(7));

    // A signal the command does not catch ends it.
    let id = agent.request(&AgentRequest::Exec(ExecRequest {
        command: "exec sleep 30".into(),
        ..ExecRequest::default()
    }));
    agent.send(&Frame::signal(id, libc::SIGKILL));
    let status = agent.collect(id, true).exited();
    assert_eq!((status.code, status.signal), (None, Some(libc::SIGKILL)));
}

#[test]
fn output_beyond_the_window_waits_for_credit() {
    let mut agent = Agent::start();
    let total = OUTPUT_WINDOW as usize + (2 << 20);
    let id = agent.request(&AgentRequest::Exec(ExecRequest {
        command: format!("head -c {total} /dev/zero"),
        shell: smolvm_protocol::Shell::Raw,
        ..ExecRequest::default()
    }));
    // Read without granting credit: the agent must stop at the window.
    let mut received = 0usize;
    while let Some(frame) = agent.try_frame(Duration::from_millis(500)) {
        assert_eq!(frame.id, id);
        match frame.kind {
            FrameKind::Stdout => received += frame.payload.len(),
            other => panic!("{other:?} frame before credit was granted: {frame:?}"),
        }
    }
    assert!(received > 0, "no output at all");
    assert!(
        received <= OUTPUT_WINDOW as usize,
        "{received} bytes sent beyond a window of {OUTPUT_WINDOW}"
    );
    assert!(received < total);
    // Grant what was consumed: the rest flows and the command completes.
    agent.send(&Frame::credit(id, received as u32));
    let output = agent.collect(id, true);
    assert_eq!(received + output.stdout.len(), total);
    assert!(output.stdout.iter().all(|&b| b == 0));
    assert_eq!(output.exited().code, Some(0));
}
