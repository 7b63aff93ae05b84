//! Times the phases of a template start (development aid).
fn main() {
    tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_writer(std::io::stderr)
        .init();
    let image = std::env::args().nth(1).unwrap_or_else(|| "minimal".into());
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let vm = smolvm::SmolVm::new(smolvm::VmConfig {
            image: Some(image.clone()),
            mem_size_mib: std::env::var("MEM").map_or(512, |m| m.parse().unwrap()),
            ..Default::default()
        })
        .unwrap();
        vm.start().unwrap();
        let started = t.elapsed();
        let r1 = vm.run("true").unwrap();
        let first = t.elapsed();
        let r2 = vm.run("true").unwrap();
        eprintln!(
            "guest time first {:?} second {:?}",
            r1.guest_time, r2.guest_time
        );
        let d = vm.run("dmesg | tail -5; cat /proc/loadavg").unwrap();
        eprintln!("{}", d.stdout_str());
        let second = t.elapsed() - first;
        drop(vm);
        eprintln!("start {started:?} first result {first:?} second run {second:?}");
    }
}
