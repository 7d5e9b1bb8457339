//! The local Prometheus of the topology: its URL, a scrape target the test
//! controls, and OpenMetrics backfills.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::required_env;

/// `SYSMANAGE_PROMETHEUS_URL`: the local Prometheus server.
pub fn prometheus_url() -> String {
    required_env("SYSMANAGE_PROMETHEUS_URL")
}

/// An exporter serving a text exposition the test sets, registered as a
/// scrape target of the local Prometheus (file service discovery) until
/// dropped.
#[derive(Debug)]
pub struct TestExporter {
    body: Arc<Mutex<String>>,
    addr: std::net::SocketAddr,
    target_file: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl TestExporter {
    /// Serves `/metrics` on a free loopback port and registers it as target
    /// `name` (a file in `SYSMANAGE_PROMETHEUS_TARGETS_DIR`), with label
    /// `test=<name>` on every scraped series.
    ///
    /// # Panics
    /// When the port cannot be bound or the targets directory is missing.
    pub async fn start(name: &str) -> Self {
        let dir = PathBuf::from(required_env("SYSMANAGE_PROMETHEUS_TARGETS_DIR"));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind exporter");
        let addr = listener.local_addr().expect("exporter address");
        let body = Arc::new(Mutex::new(String::new()));
        let served = body.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    continue;
                };
                let text = served
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                tokio::spawn(async move {
                    let mut buf = vec![0_u8; 4096];
                    // One request per connection: read the head, answer, close.
                    let _ = socket.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        let target_file = dir.join(format!("{name}.json"));
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(
            &tmp,
            format!(r#"[{{"targets": ["{addr}"], "labels": {{"test": "{name}"}}}}]"#),
        )
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
        std::fs::rename(&tmp, &target_file).expect("register the scrape target");
        Self {
            body,
            addr,
            target_file,
            task,
        }
    }

    /// Replaces what the next scrapes return (text exposition format).
    pub fn set(&self, exposition: impl Into<String>) {
        *self.body.lock().unwrap_or_else(PoisonError::into_inner) = exposition.into();
    }

    /// The exporter's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }
}

impl Drop for TestExporter {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.target_file);
        self.task.abort();
    }
}

/// Writes `openmetrics` (ending in `# EOF`) to a file and backfills it into
/// the local Prometheus with `scripts/services prometheus-backfill` (the
/// server restarts and has the blocks when this returns).
///
/// # Panics
/// When the script fails.
pub fn backfill(name: &str, openmetrics: &str) {
    let path = std::env::temp_dir().join(format!(
        "sysmanage-backfill-{name}-{}.om",
        std::process::id()
    ));
    std::fs::write(&path, openmetrics).expect("write the OpenMetrics file");
    let out = std::process::Command::new(required_env("SYSMANAGE_SERVICES"))
        .arg("prometheus-backfill")
        .arg(&path)
        .output()
        .expect("run scripts/services prometheus-backfill");
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "prometheus-backfill failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
