//! Helpers shared by the sysmanage-rs examples.

/// Installs a `tracing` subscriber that honours `RUST_LOG` (default: `warn`).
///
/// Only binaries install subscribers; the libraries never do.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Prints a heading for one section of an example's output.
pub fn section(title: &str) {
    println!("\n== {title} ==");
}

/// Serialises `value` as pretty JSON for display.
pub fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("<unserialisable: {e}>"))
}
