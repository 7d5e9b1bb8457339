//! No password in the logs: a working TLS login, a wrong password and a
//! wrong CA against the local secure cluster (started by scripts/test), all
//! logged at TRACE by a subscriber installed as the global default.
//!
//! A binary of its own with a single test: a scoped subscriber
//! (`with_default`) misses events when other tests of the same binary
//! register tracing's callsites concurrently, which would make the check
//! vacuous.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use sysmanage_cache::RedisCache;
use sysmanage_core::{Pem, Secret, TlsConfig};
use sysmanage_test::{redis_tls_security, tls_file};

use common::{assert_no_secret, secure_config};

/// A `Write` into a shared buffer, for capturing log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_password_in_the_logs() {
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = RedisCache::connect(secure_config()).await.unwrap();
        cache.refresh_now().await.unwrap();
        let mut cfg = secure_config();
        cfg.password = Some(Secret::new(redis_tls_security().password + "x"));
        let _ = RedisCache::connect(cfg).await;
        let mut cfg = secure_config();
        cfg.tls = Some(TlsConfig::verify_full().ca(Pem::file(tls_file("other-ca.crt"))));
        let _ = RedisCache::connect(cfg).await;
    });
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("sysmanage_cache"),
        "nothing was logged: the check would be vacuous"
    );
    assert_no_secret(&text);
}
