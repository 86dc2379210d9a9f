//! Interruption: SIGINT, SIGTERM and SIGHUP end a program without leaving its unfinished
//! files behind.
//!
//! Every file a run creates only to remove or rename it later (the temporary file of an
//! [`OutputFile`](crate::output::OutputFile) being written, a [`RunLock`](crate::lock::RunLock)'s
//! lock file) is registered here with a [`RemoveOnInterrupt`] guard for as long as it is
//! unfinished. A program calls [`exit_on_signals`] once at its start; on a signal the
//! registered files are removed, the program says what was kept and exits with status
//! 128 + the signal's number, as a shell reports a process killed by it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The files to remove if the program is interrupted now.
static UNFINISHED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Keeps `path` on the list of files removed on an interruption until it is dropped.
#[derive(Debug)]
pub struct RemoveOnInterrupt {
    path: PathBuf,
}

impl RemoveOnInterrupt {
    /// Registers `path`.
    pub fn new(path: &Path) -> RemoveOnInterrupt {
        unfinished().insert(path.to_path_buf());
        RemoveOnInterrupt {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for RemoveOnInterrupt {
    fn drop(&mut self) {
        unfinished().remove(&self.path);
    }
}

fn unfinished() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    // A panic while the set was held leaves it consistent (inserts and removes are whole).
    UNFINISHED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Removes every registered file and returns how many there were; the set stays locked
/// until the process exits, so nothing registers a new file after the cleaning.
fn remove_unfinished_and_hold() -> usize {
    let set = unfinished();
    for path in set.iter() {
        let _ = std::fs::remove_file(path);
    }
    let removed = set.len();
    std::mem::forget(set);
    removed
}

/// Installs the handler of SIGINT, SIGTERM and SIGHUP for program `program`: on a signal,
/// the unfinished files are removed, `kept` (what the interrupted run leaves, e.g. "the
/// last checkpoint is kept; --resume goes on from it") is said on stderr after the count of
/// removed files, and the process exits with 128 + the signal's number. Call once, early in
/// `main`; where signals do not exist (Windows) it does nothing.
pub fn exit_on_signals(program: &'static str, kept: &'static str) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    let removed = remove_unfinished_and_hold();
                    let name = signal_name(signal);
                    let files = if removed == 1 { "file" } else { "files" };
                    eprintln!(
                        "{program}: stopped by {name}: {removed} unfinished {files} removed; {kept}"
                    );
                    std::process::exit(128 + signal);
                }
            })?;
    }
    #[cfg(not(unix))]
    let _ = (program, kept);
    Ok(())
}

#[cfg(unix)]
fn signal_name(signal: i32) -> &'static str {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_registered_while_its_guard_lives() {
        let path = Path::new("/nonexistent/registered-by-a-test");
        {
            let _guard = RemoveOnInterrupt::new(path);
            assert!(unfinished().contains(path));
        }
        assert!(!unfinished().contains(path));
    }
}
