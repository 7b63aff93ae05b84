//! Finding and reading the virtio-serial port the host talks to.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use smolvm_protocol::AGENT_PORT_NAME;

/// How long to wait for the port's device node after boot.
const PORT_WAIT: Duration = Duration::from_secs(10);
/// Pause between reads while the host side is disconnected. Reads return EOF at once in that
/// state, so re-reading without a pause would burn a whole vCPU.
const DISCONNECTED_BACKOFF: Duration = Duration::from_millis(5);

/// Opens the port named [`AGENT_PORT_NAME`]. Without udev there are no `/dev/virtio-ports/`
/// links, so the name is looked up in sysfs and the matching `/dev/vportNpM` node opened.
pub fn open_agent_port() -> io::Result<File> {
    let start = Instant::now();
    loop {
        if let Some(dev) = find_port_device()? {
            return OpenOptions::new().read(true).write(true).open(dev);
        }
        if start.elapsed() > PORT_WAIT {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no virtio-serial port named {AGENT_PORT_NAME} after {PORT_WAIT:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn find_port_device() -> io::Result<Option<PathBuf>> {
    let dir = match std::fs::read_dir("/sys/class/virtio-ports") {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in dir.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == AGENT_PORT_NAME {
            let dev = PathBuf::from("/dev").join(entry.file_name());
            if dev.exists() {
                return Ok(Some(dev));
            }
        }
    }
    Ok(None)
}

/// A reader over the port that waits out host disconnections instead of reporting EOF.
pub struct PortReader(pub File);

impl Read for PortReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Ok(0) if !buf.is_empty() => std::thread::sleep(DISCONNECTED_BACKOFF),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}
