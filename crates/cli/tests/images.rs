//! `smolvm image ...` and `--image`, through the real binary (VMs boot for real).

mod common;

use common::{json, private_data_dir, run, run_in, text};

#[test]
fn image_ls_and_inspect_show_both_images_and_bad_names_say_what_exists() {
    let out = run(&["--json", "image", "ls"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v = json(&out);
    let images = v["data"].as_array().unwrap();
    let kind_of = |name: &str| {
        images
            .iter()
            .find(|i| i["name"] == name)
            .map(|i| i["kind"].as_str().unwrap().to_string())
    };
    assert_eq!(kind_of("debian").as_deref(), Some("ext4"));
    assert_eq!(kind_of("minimal").as_deref(), Some("initramfs"));
    assert!(
        kind_of("floor").is_none(),
        "the benchmark image is not listed"
    );

    let out = run(&["image", "inspect", "debian"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("debian bookworm minbase") && shown.contains("python3"),
        "{shown}"
    );

    let out = run(&["--json", "image", "inspect", "no-such-image"]);
    assert_eq!(out.status.code(), Some(3));
    let v = json(&out);
    assert_eq!(v["error"]["code"], "not_found");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("debian") && message.contains("minimal"),
        "{message}"
    );
    let out = run(&["image", "rm", "no-such-image"]);
    assert_eq!(out.status.code(), Some(3));

    // Invalid requests are refused before anything is built.
    let out = run(&["image", "build", "debian", "--packages", "Not A Package"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("packages"));
    let out = run(&["image", "build", "debian", "--size", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["image", "build", "alpine"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("debian, minimal"));
    // The default image is current: building it again is a no-op that says so.
    let out = run(&["image", "build", "debian"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("up to date"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn run_boots_debian_by_default_and_minimal_on_request() {
    let out = run(&["run", "--", "python3 -c 'print(6*7)'; cat /proc/cmdline"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("42\n") && stdout.contains("root=/dev/vda"),
        "{stdout}"
    );
    let out = run(&["run", "--image", "minimal", "--", "cat /proc/cmdline"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("root=/dev/vda"));
    let out = run(&["run", "--image", "nope", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown image \"nope\"; available: debian, minimal"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_image_in_use_is_kept_unless_forced_and_a_named_sandbox_keeps_its_disk() {
    let data = private_data_dir("image-in-use");
    let out = run_in(&data, &["create", "--name", "keeper"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = run_in(&data, &["exec", "keeper", "--", "echo persisted > /root/f"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(run_in(&data, &["restart", "keeper"]).status.success());
    let out = run_in(&data, &["exec", "keeper", "--", "cat /root/f"]);
    assert_eq!(text(&out.stdout), "persisted\n");
    let out = run_in(&data, &["--json", "ls"]);
    assert_eq!(json(&out)["data"][0]["image"], "debian");

    let out = run_in(&data, &["--json", "image", "rm", "debian"]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["error"]["code"], "image_in_use");
    assert!(v["error"]["message"].as_str().unwrap().contains("keeper"));
    assert!(run_in(&data, &["rm", "--force", "keeper"]).status.success());
    assert!(!data.join("vms/keeper").exists());
    let _ = std::fs::remove_dir_all(&data);
}
