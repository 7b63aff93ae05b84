//! Environment variables, as the reference documents them (`shared/spec/env-vars-reference.md`),
//! on real VMs. Each spec example is translated to Rust with the same expected output.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use smolvm::{DataDir, Error, RunOptions, Shell, VmConfig};

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn spec_quick_start() {
    let vm = common::vm();
    vm.set_env_vars(&vars(&[("API_KEY", "secret-123"), ("DEBUG", "true")]), true)
        .unwrap();
    assert_eq!(vm.run("echo $API_KEY").unwrap().output(), "secret-123");
    assert_eq!(
        vm.list_env_vars().unwrap(),
        vars(&[("API_KEY", "secret-123"), ("DEBUG", "true")])
    );
    assert_eq!(
        vm.unset_env_vars(&["DEBUG"]).unwrap(),
        vars(&[("DEBUG", "true")])
    );
}

#[test]
fn spec_merge_replace_and_return_values() {
    let vm = common::vm();
    assert!(
        vm.list_env_vars().unwrap().is_empty(),
        "empty map when nothing is set"
    );
    vm.set_env_vars(
        &vars(&[
            ("APP_ENV", "production"),
            ("LOG_LEVEL", "info"),
            ("MAX_WORKERS", "4"),
        ]),
        false,
    )
    .unwrap();
    vm.set_env_vars(&vars(&[("FOO", "bar"), ("BAZ", "qux")]), false)
        .unwrap();
    vm.set_env_vars(&vars(&[("FOO", "updated"), ("NEW", "value")]), true)
        .unwrap();
    assert_eq!(
        vm.list_env_vars().unwrap(),
        vars(&[("FOO", "updated"), ("BAZ", "qux"), ("NEW", "value")])
    );
    vm.set_env_vars(&vars(&[("ONLY", "this")]), false).unwrap();
    assert_eq!(vm.list_env_vars().unwrap(), vars(&[("ONLY", "this")]));

    vm.set_env_vars(&BTreeMap::new(), false).unwrap();
    let keys = vm
        .set_env_vars(&vars(&[("KEY1", "val1"), ("KEY2", "val2")]), true)
        .unwrap();
    assert_eq!(keys, names(&["KEY1", "KEY2"]));
    // An empty update returns the names present (the reference returns []).
    assert_eq!(
        vm.set_env_vars(&BTreeMap::new(), true).unwrap(),
        names(&["KEY1", "KEY2"])
    );
    // Sorted by name, all of them, not just the ones in this call.
    assert_eq!(
        vm.set_env_vars(&vars(&[("A0", "x")]), true).unwrap(),
        names(&["A0", "KEY1", "KEY2"])
    );

    vm.set_env_vars(&vars(&[("A", "1"), ("B", "2"), ("C", "3")]), false)
        .unwrap();
    let removed = vm.unset_env_vars(&["A", "C", "NONEXISTENT"]).unwrap();
    assert_eq!(removed, vars(&[("A", "1"), ("C", "3")]));
    assert_eq!(vm.list_env_vars().unwrap(), vars(&[("B", "2")]));
    assert!(vm.unset_env_vars(&["OLD_KEY"]).unwrap().is_empty());
}

#[test]
fn spec_boot_time_injection() {
    let data = DataDir::from_env();
    let config = VmConfig {
        vm_id: Some(format!("api-server-{}", std::process::id())),
        vcpu_count: 1,
        mem_size_mib: 512,
        kernel_path: Some(data.kernel()),
        rootfs_path: Some(smolvm::image::rootfs_of(&data, "minimal").unwrap()),
        boot_args: Some(smolvm::DEFAULT_BOOT_ARGS.to_string()),
        env_vars: vars(&[
            ("DATABASE_URL", "postgres://localhost/mydb"),
            ("API_TOKEN", "secret-token-123"),
            ("ENVIRONMENT", "staging"),
        ]),
        image: None,
    };
    let vm = common::vm_with(config);
    assert_eq!(
        vm.run("echo $DATABASE_URL").unwrap().output(),
        "postgres://localhost/mydb"
    );
    assert_eq!(vm.list_env_vars().unwrap().len(), 3);
}

#[test]
fn spec_naming_rules() {
    let vm = common::vm();
    vm.set_env_vars(
        &vars(&[
            ("API_KEY", "value"),
            ("db_host", "localhost"),
            ("_private", "secret"),
            ("VAR123", "test"),
        ]),
        true,
    )
    .unwrap();
    for bad in [
        "123invalid",
        "has-dash",
        "invalid-key",
        "FOO\n",
        "",
        "has space",
        "ÄÖÜ",
        "\nFOO",
    ] {
        let err = vm.set_env_vars(&vars(&[(bad, "value")]), true).unwrap_err();
        assert!(matches!(err, Error::InvalidEnv(_)), "{bad:?}: {err:?}");
        assert!(
            err.to_string().contains("Invalid environment variable key"),
            "{err}"
        );
    }
    assert_eq!(vm.list_env_vars().unwrap().len(), 4);
}

#[test]
fn spec_special_characters_multiline_and_file_format() {
    let vm = common::vm();
    vm.set_env_vars(&vars(&[("TEST", "value")]), true).unwrap();
    let file = vm.run("cat /etc/profile.d/smolvm_env.sh").unwrap();
    assert_eq!(
        file.stdout_str(),
        "#!/bin/sh\n# SmolVM managed environment variables\n\nexport TEST='value'\n"
    );
    assert_eq!(
        file.output(),
        "#!/bin/sh\n# SmolVM managed environment variables\n\nexport TEST='value'"
    );
    assert_eq!(
        vm.run("stat -c %a /etc/profile.d/smolvm_env.sh")
            .unwrap()
            .output(),
        "644"
    );

    let special = vars(&[
        ("PASSWORD", "p@ssw0rd!#$%"),
        ("PATH_WITH_SPACES", "/path/with spaces/file.txt"),
        ("JSON_CONFIG", r#"{"key": "value", "nested": {"a": 1}}"#),
        ("QUOTES", "Value with 'single' and \"double\" quotes"),
    ]);
    vm.set_env_vars(&special, true).unwrap();
    assert_eq!(vm.run("echo $PASSWORD").unwrap().output(), "p@ssw0rd!#$%");
    let multiline_script = "\n#!/bin/bash\necho \"Line 1\"\necho \"Line 2\"\n";
    vm.set_env_vars(&vars(&[("SCRIPT", multiline_script)]), true)
        .unwrap();
    let listed = vm.list_env_vars().unwrap();
    assert_eq!(listed["SCRIPT"], multiline_script);
    for (key, value) in &special {
        assert_eq!(&listed[key], value);
        assert_eq!(
            vm.run(&format!("printenv {key}")).unwrap().stdout_str(),
            format!("{value}\n")
        );
    }
}

#[test]
fn spec_login_raw_dynamic_updates_and_base64() {
    let vm = common::vm();
    vm.set_env_vars(&vars(&[("MY_VAR", "hello")]), true)
        .unwrap();
    let login = RunOptions {
        shell: Shell::Login,
        ..RunOptions::default()
    };
    assert_eq!(
        vm.run_with("echo $MY_VAR", &login).unwrap().output(),
        "hello"
    );
    assert_eq!(
        vm.run_with("echo \"[$MY_VAR]\"", &RunOptions::raw())
            .unwrap()
            .output(),
        "[]"
    );

    vm.set_env_vars(&vars(&[("LOG_LEVEL", "info"), ("CACHE_TTL", "3600")]), true)
        .unwrap();
    vm.set_env_vars(&vars(&[("LOG_LEVEL", "debug")]), true)
        .unwrap();
    assert_eq!(vm.run("echo $LOG_LEVEL").unwrap().output(), "debug");
    assert_eq!(vm.run("echo $CACHE_TTL").unwrap().output(), "3600");

    // base64.b64encode(b"sensitive-api-key")
    vm.set_env_vars(
        &vars(&[("ENCODED_SECRET", "c2Vuc2l0aXZlLWFwaS1rZXk=")]),
        true,
    )
    .unwrap();
    assert_eq!(
        vm.run("echo $ENCODED_SECRET | base64 -d").unwrap().output(),
        "sensitive-api-key"
    );
    vm.set_env_vars(
        &vars(&[
            ("FEATURE_NEW_UI", "enabled"),
            ("FEATURE_BETA_API", "disabled"),
        ]),
        true,
    )
    .unwrap();
    let flags = vm.run(r#"if [ "$FEATURE_NEW_UI" = enabled ]; then echo "Using new UI"; else echo "Using legacy UI"; fi"#);
    assert_eq!(flags.unwrap().output(), "Using new UI");
}

#[test]
fn spec_isolation_between_vms() {
    let vm1 = common::vm();
    vm1.set_env_vars(&vars(&[("INSTANCE", "vm1")]), true)
        .unwrap();
    let vm2 = common::vm();
    vm2.set_env_vars(&vars(&[("INSTANCE", "vm2")]), true)
        .unwrap();
    assert_eq!(vm2.run("echo $INSTANCE").unwrap().output(), "vm2");
    assert_eq!(vm1.run("echo $INSTANCE").unwrap().output(), "vm1");
    drop(vm1);
    assert_eq!(vm2.list_env_vars().unwrap(), vars(&[("INSTANCE", "vm2")]));
}

#[test]
fn spec_atomic_updates_leave_the_file_byte_for_byte_unchanged() {
    let vm = common::vm();
    vm.set_env_vars(&vars(&[("KEEP", "it's here"), ("MULTI", "a\nb")]), true)
        .unwrap();
    let before = vm.run("cat /etc/profile.d/smolvm_env.sh").unwrap().stdout;
    for bad in [
        vars(&[("VALID_KEY", "value"), ("123invalid", "bad")]),
        vars(&[("VALID_KEY", "nul\0inside")]),
    ] {
        assert!(vm.set_env_vars(&bad, true).is_err());
        assert!(vm.set_env_vars(&bad, false).is_err());
    }
    assert_eq!(
        vm.run("cat /etc/profile.d/smolvm_env.sh").unwrap().stdout,
        before
    );
    assert_eq!(
        vm.list_env_vars().unwrap(),
        vars(&[("KEEP", "it's here"), ("MULTI", "a\nb")])
    );
}

#[test]
fn spec_error_handling_on_a_stopped_vm() {
    let vm = common::vm();
    vm.stop().unwrap();
    for err in [
        vm.set_env_vars(&vars(&[("KEY", "value")]), true)
            .unwrap_err(),
        vm.list_env_vars().unwrap_err(),
        vm.unset_env_vars(&["KEY"]).unwrap_err(),
    ] {
        assert!(matches!(err, Error::VmNotRunning { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("Cannot manage environment variables: VM is stopped"),
            "{err}"
        );
    }
}

#[test]
fn awkward_values_round_trip_through_list_and_printenv_after_later_merges() {
    let vm = common::vm();
    let awkward = vars(&[
        ("SCRIPT", "#!/bin/sh\necho \"a\"\n\techo 'b'\n"),
        ("TRAILING_NEWLINES", "value\n\n\n"),
        ("QUOTES", "it's \"quoted\" ''' \\' end"),
        ("SHELL_META", "$HOME `id` $(reboot) ; | & > < * ? [a] ~ !"),
        ("BACKSLASHES", "\\ \\\\ \\n \\t"),
        ("TABS", "\ta\tb\t"),
        ("UNICODE", "héllo wörld ✓ 🦀 日本"),
        ("JSON", r#"{"k": ["v", 1, null], "s": "a'b"}"#),
        ("LEADING_DASH", "-n -e --help"),
        ("EMPTY", ""),
        ("SPACES", "  padded  "),
    ]);
    vm.set_env_vars(&awkward, true).unwrap();
    // Later merges (the reference loses multi-line values here) must keep everything.
    vm.set_env_vars(&vars(&[("LATER", "1")]), true).unwrap();
    vm.unset_env_vars(&["LATER"]).unwrap();
    vm.set_env_vars(&vars(&[("LATER2", "2")]), true).unwrap();
    let listed = vm.list_env_vars().unwrap();
    for (key, value) in &awkward {
        assert_eq!(&listed[key], value, "{key} via list_env_vars");
        let printed = vm.run(&format!("printenv {key}")).unwrap();
        assert_eq!(
            printed.stdout_str(),
            format!("{value}\n"),
            "{key} via printenv"
        );
    }
}

#[test]
fn thirty_two_concurrent_merges_keep_every_key() {
    let vm = Arc::new(common::vm());
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let vm = Arc::clone(&vm);
            std::thread::spawn(move || {
                vm.set_env_vars(
                    &vars(&[(&format!("CONCURRENT_{i:02}"), &format!("v{i}"))]),
                    true,
                )
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap().unwrap();
    }
    let listed = vm.list_env_vars().unwrap();
    assert_eq!(listed.len(), 32, "{listed:?}");
    for i in 0..32 {
        assert_eq!(listed[&format!("CONCURRENT_{i:02}")], format!("v{i}"));
    }
}

#[test]
fn a_thousand_variables_and_the_largest_value_in_one_call() {
    let vm = common::vm();
    let mut many: BTreeMap<String, String> = (0..1000)
        .map(|i| (format!("VAR_{i:04}"), format!("value {i} '\"$")))
        .collect();
    // The longest value Linux still execs: "BIG=" + value + NUL is MAX_ARG_STRLEN (a longer
    // one is refused; see env_limits.rs).
    let len = smolvm::protocol::MAX_ENV_ENTRY_BYTES - "BIG=".len() - 1;
    let big: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    many.insert("BIG".into(), big.clone());
    let keys = vm.set_env_vars(&many, true).unwrap();
    assert_eq!(keys.len(), 1001);
    let listed = vm.list_env_vars().unwrap();
    assert_eq!(listed, many);
    // An external program starts with all of them in its environment.
    assert_eq!(
        vm.run("printenv BIG | tr -d '\\n' | wc -c")
            .unwrap()
            .output(),
        len.to_string()
    );
    assert_eq!(
        vm.run("echo \"$VAR_0999\"").unwrap().output(),
        "value 999 '\"$"
    );
    assert_eq!(vm.unset_env_vars(&["BIG"]).unwrap()["BIG"], big);
}
