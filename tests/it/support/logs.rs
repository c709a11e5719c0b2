//! Captures every log line the broker writes during the tests, so tests
//! can assert that no secret ever reaches a log. Lines also go to
//! `target/test-logs/<pid>.log`, which `scripts/check-test-logs.sh` scans
//! after the whole suite.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

struct Sink {
    buffer: Buffer,
    file: Option<Arc<Mutex<std::fs::File>>>,
}

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer
            .0
            .lock()
            .expect("log buffer")
            .extend_from_slice(data);
        if let Some(file) = &self.file {
            let _ = file.lock().expect("log file").write_all(data);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static CAPTURE: OnceLock<Buffer> = OnceLock::new();

/// Installs the capturing subscriber (once per process), at TRACE level.
pub fn install() {
    CAPTURE.get_or_init(|| {
        let buffer = Buffer::default();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-logs");
        let file = std::fs::create_dir_all(&dir)
            .ok()
            .and_then(|_| {
                std::fs::File::create(dir.join(format!("{}.log", std::process::id()))).ok()
            })
            .map(|f| Arc::new(Mutex::new(f)));
        let make = {
            let buffer = buffer.clone();
            move || Sink {
                buffer: buffer.clone(),
                file: file.clone(),
            }
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter("trace")
            .with_writer(make)
            .with_ansi(false)
            .try_init();
        buffer
    });
}

/// Everything logged so far in this process.
pub fn captured() -> String {
    install();
    let buffer = CAPTURE.get().expect("installed");
    String::from_utf8_lossy(&buffer.0.lock().expect("log buffer")).into_owned()
}
