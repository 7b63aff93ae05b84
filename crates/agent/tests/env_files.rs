//! The managed environment and file transfers, in host mode.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{vars, Agent, TempDir};
use smolvm_protocol::{AgentRequest, ErrorKind, FileKind, Response, TreeEntry};

#[test]
fn env_set_list_unset_and_login_shells_see_the_managed_set() {
    let mut agent = Agent::start();
    let tricky = "it's \"quoted\" $HOME `x`\nsecond line";
    let response = agent.call(&AgentRequest::EnvSet {
        vars: vars(&[("API_KEY", tricky), ("OTHER", "x")]),
        merge: true,
    });
    assert_eq!(
        response,
        Response::EnvKeys {
            keys: vec!["API_KEY".into(), "OTHER".into()]
        }
    );
    assert_eq!(
        agent.call(&AgentRequest::EnvList),
        Response::EnvVars {
            vars: vars(&[("API_KEY", tricky), ("OTHER", "x")])
        }
    );
    // The file lives in the state dir, in the guest's layout.
    let file = agent.state.path().join("etc/profile.d/smolvm_env.sh");
    assert!(std::fs::read_to_string(&file).unwrap().contains("API_KEY"));

    // A login shell sees the managed set, exactly; a raw shell does not read it.
    assert_eq!(agent.sh("printf '%s' \"$API_KEY\"").out(), tricky);
    assert_eq!(
        agent.sh_raw("printf '%s' \"${API_KEY-unset}\"").out(),
        "unset"
    );

    let response = agent.call(&AgentRequest::EnvUnset {
        keys: vec!["API_KEY".into(), "NEVER_SET".into()],
    });
    assert_eq!(
        response,
        Response::EnvVars {
            vars: vars(&[("API_KEY", tricky)])
        }
    );
    assert_eq!(
        agent
            .sh("printf '%s/%s' \"${API_KEY-unset}\" \"$OTHER\"")
            .out(),
        "unset/x"
    );

    // Replacing (no merge) drops the old set.
    let response = agent.call(&AgentRequest::EnvSet {
        vars: vars(&[("ONLY", "1")]),
        merge: false,
    });
    assert_eq!(
        response,
        Response::EnvKeys {
            keys: vec!["ONLY".into()]
        }
    );
    assert_eq!(
        agent.sh("printf '%s' \"${OTHER-unset}$ONLY\"").out(),
        "unset1"
    );
}

#[test]
fn invalid_variables_are_refused_and_nothing_changes() {
    let mut agent = Agent::start();
    agent.call(&AgentRequest::EnvSet {
        vars: vars(&[("KEPT", "1")]),
        merge: true,
    });
    for bad in [("1BAD", "x"), ("GOOD", "nul\0byte")] {
        match agent.call(&AgentRequest::EnvSet {
            vars: vars(&[bad, ("ALSO", "y")]),
            merge: true,
        }) {
            Response::Error { kind, .. } => assert_eq!(kind, ErrorKind::Validation),
            other => panic!("{bad:?} was accepted: {other:?}"),
        }
    }
    assert_eq!(
        agent.call(&AgentRequest::EnvList),
        Response::EnvVars {
            vars: vars(&[("KEPT", "1")])
        }
    );
}

#[test]
fn write_read_stat_mkdir_symlink_and_list_a_tree() {
    let mut agent = Agent::start();
    let dir = TempDir::new("files");
    let root = dir.path().to_string_lossy().into_owned();
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();

    let file = format!("{root}/a/b/data.bin");
    assert_eq!(agent.write_file(&file, 0o640, true, &content), Response::Ok);
    assert_eq!(std::fs::read(&file).unwrap(), content);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);

    // A missing parent is refused unless parents are asked for; nothing is left behind.
    match agent.write_file(&format!("{root}/missing/x"), 0o644, false, b"x") {
        Response::Error { kind, .. } => assert_eq!(kind, ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
    assert!(!dir.path().join("missing").exists());

    let read = agent.run(&AgentRequest::ReadFile { path: file.clone() });
    assert_eq!(read.stdout, content);
    let announced: Response = serde_json::from_slice(&read.stderr).unwrap();
    let expected = Response::FileInfo {
        kind: Some(FileKind::File),
        mode: 0o640,
        size: content.len() as u64,
    };
    assert_eq!(announced, expected);
    assert_eq!(read.response, expected);

    assert_eq!(
        agent.call(&AgentRequest::Stat { path: file.clone() }),
        expected
    );
    assert_eq!(
        agent.call(&AgentRequest::Stat {
            path: format!("{root}/nothing")
        }),
        Response::FileInfo {
            kind: None,
            mode: 0,
            size: 0
        }
    );
    assert_eq!(
        agent.call(&AgentRequest::MakeDir {
            path: format!("{root}/c/d"),
            mode: 0o750,
        }),
        Response::Ok
    );
    assert_eq!(
        agent.call(&AgentRequest::Symlink {
            path: format!("{root}/link"),
            target: "a/b/data.bin".into(),
        }),
        Response::Ok
    );

    let listing = agent.run(&AgentRequest::ListTree { path: root.clone() });
    assert_eq!(
        listing.response,
        Response::Tree {
            entries: Vec::new()
        }
    );
    let mut entries: Vec<TreeEntry> = Vec::new();
    // Each chunk is one JSON array; concatenated they read as consecutive arrays.
    for chunk in serde_json::Deserializer::from_slice(&listing.stdout).into_iter::<Vec<TreeEntry>>()
    {
        entries.extend(chunk.unwrap_or_else(|e| panic!("bad listing chunk: {e}")));
    }
    let summary: Vec<(String, FileKind)> =
        entries.iter().map(|e| (e.path.clone(), e.kind)).collect();
    let expected: Vec<(String, FileKind)> = [
        ("a", FileKind::Dir),
        ("c", FileKind::Dir),
        ("link", FileKind::Symlink),
        ("c/d", FileKind::Dir),
        ("a/b", FileKind::Dir),
        ("a/b/data.bin", FileKind::File),
    ]
    .iter()
    .map(|(p, k)| (p.to_string(), *k))
    .collect();
    assert_eq!(summary, expected);
    let link = entries.iter().find(|e| e.path == "link").unwrap();
    assert_eq!(link.target.as_deref(), Some("a/b/data.bin"));
    let d = entries.iter().find(|e| e.path == "c/d").unwrap();
    assert_eq!(d.mode, 0o750);
}

#[test]
fn relative_and_missing_paths_are_errors() {
    let mut agent = Agent::start();
    match agent.call(&AgentRequest::Stat {
        path: "relative/path".into(),
    }) {
        Response::Error { kind, .. } => assert_eq!(kind, ErrorKind::InvalidRequest),
        other => panic!("{other:?}"),
    }
    let dir = TempDir::new("missing");
    match agent.run(&AgentRequest::ReadFile {
        path: format!("{}/none", dir.path().display()),
    }) {
        common::Output {
            response: Response::Error { kind, .. },
            ..
        } => assert_eq!(kind, ErrorKind::NotFound),
        other => panic!("{other:?}"),
    }
}
