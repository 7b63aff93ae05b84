//! `smolvm-supervisor --dir <vm dir>`: runs one VM; started by the SDK, not by users.

#![forbid(unsafe_code)]

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = match (args.next().as_deref(), args.next()) {
        (Some("--dir"), Some(dir)) => dir,
        _ => {
            eprintln!("usage: smolvm-supervisor --dir <vm directory>  (started by the SmolVM SDK)");
            std::process::exit(2);
        }
    };
    // This process (not the SDK library) owns its umask: whatever it and QEMU create without
    // an explicit mode (QEMU's QMP socket, its console file) is private to the user.
    // No other thread exists yet.
    smolvm_sys::process::set_umask(0o077);
    smolvm::supervisor::init_logging();
    std::process::exit(smolvm::supervisor::run(std::path::Path::new(&dir)));
}
