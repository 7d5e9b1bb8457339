//! A decoy TLS server for negative tests.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::required_env;

// ring: the provider the crates under test use (see sysmanage-cache); rustls
// 0.23.48 deprecates it only for lacking post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server on a free loopback port that presents a chosen certificate
/// (expired, self-signed, …) and serves nothing: the client's verdict on
/// the certificate is all a negative test needs. For PostgreSQL it first
/// answers the `SSLRequest` with `S`, as a server does. Stopped on drop.
#[derive(Debug)]
pub struct TlsDecoy {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TlsDecoy {
    /// Serves the certificate `cert` (a file of the test CA directory, see
    /// [`tls_file`](crate::tls_file)) with the test server's key.
    ///
    /// # Panics
    /// When the files cannot be read or no port can be bound.
    pub fn start(cert: &Path, postgres: bool) -> Self {
        let key_path = Path::new(&required_env("SYSMANAGE_TLS_DIR")).join("server.key");
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("read the decoy certificate")
            .map(|c| c.expect("a certificate"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(&key_path).expect("read the server key");
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("decoy certificate and key"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let config = config.clone();
                        std::thread::spawn(move || serve(stream, config, postgres));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .expect("decoy address has a port")
    }
}

fn serve(mut stream: TcpStream, config: Arc<rustls::ServerConfig>, postgres: bool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    if postgres {
        // SSLRequest: length 8, code 80877103.
        let mut request = [0u8; 8];
        if stream.read_exact(&mut request).is_err() || stream.write_all(b"S").is_err() {
            return;
        }
    }
    let Ok(mut conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    // Handshake until the client gives up (it rejects the certificate).
    while conn.is_handshaking() {
        if conn.complete_io(&mut stream).is_err() {
            return;
        }
    }
    let mut tls = rustls::Stream::new(&mut conn, &mut stream);
    let mut buf = [0u8; 1024];
    while matches!(tls.read(&mut buf), Ok(n) if n > 0) {}
}

impl Drop for TlsDecoy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
