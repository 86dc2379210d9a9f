//! The three programs' log: warnings and what they choose to say on stderr, without time
//! stamps or targets, in colour only on a terminal; `RUST_LOG` overrides the level.

use std::io::IsTerminal;

/// Sends `tracing` events to stderr at `default` (an `EnvFilter` directive such as `warn` or
/// `hands_infer=info`) unless `RUST_LOG` says otherwise. Call once, early in `main`.
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
}
