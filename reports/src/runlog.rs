//! Run logs (`runs/NAME/*.jsonl`, one JSON object per line, flushed as written) and the
//! progress bar shared by the subcommands.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use hands_models::output::write_atomic;

use crate::file_error::RunFileError;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// A JSON-lines log of per-epoch records.
///
/// A fresh run truncates the file; a resumed run keeps the records of the epochs before the
/// one it resumes from (dropping those of the interrupted epoch and any torn last line) and
/// appends after them, so the log of a resumed run equals that of an uninterrupted one.
#[derive(Debug)]
pub struct RunLog {
    path: PathBuf,
    file: File,
}

impl RunLog {
    /// Starts an empty log at `path`, truncating an existing one.
    pub fn create(path: &Path) -> Result<RunLog, RunFileError> {
        let file = File::create(path).map_err(|e| RunFileError::io(path, e))?;
        Ok(RunLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Reopens the log at `path` for a run resumed at `resumed_epoch`: records whose
    /// `epoch` field is below `resumed_epoch` are kept, records of later epochs and lines
    /// that are not JSON objects are dropped (the file is rewritten atomically), and lines
    /// without an `epoch` field are kept. A missing file starts empty.
    pub fn resume(path: &Path, resumed_epoch: usize) -> Result<RunLog, RunFileError> {
        let mut kept = String::new();
        match File::open(path) {
            Ok(file) => {
                for line in BufReader::new(file).lines() {
                    let line = line.map_err(|e| RunFileError::io(path, e))?;
                    let Ok(serde_json::Value::Object(record)) = serde_json::from_str(&line) else {
                        continue;
                    };
                    let keep = match record.get("epoch") {
                        None => true,
                        Some(e) => e.as_u64().is_some_and(|e| e < resumed_epoch as u64),
                    };
                    if keep {
                        kept.push_str(&line);
                        kept.push('\n');
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(RunFileError::io(path, e)),
        }
        write_atomic(path, kept.as_bytes())?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| RunFileError::io(path, e))?;
        Ok(RunLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Opens `path` fresh (`resume_from = None`) or for a run resumed at that epoch.
    pub fn open(path: &Path, resume_from: Option<usize>) -> Result<RunLog, RunFileError> {
        match resume_from {
            None => RunLog::create(path),
            Some(epoch) => RunLog::resume(path, epoch),
        }
    }

    /// Appends `record` as one line and flushes it.
    pub fn write(&mut self, record: &impl Serialize) -> Result<(), RunFileError> {
        let mut line = serde_json::to_string(record).map_err(|e| {
            RunFileError::format(&self.path, format!("cannot serialise record: {e}"))
        })?;
        line.push('\n');
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .map_err(|e| RunFileError::io(&self.path, e))
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A progress bar of `len` steps with `message` as prefix, drawn on stderr only when stderr
/// is a terminal (hidden in logs, pipes and tests).
pub fn progress_bar(len: u64, message: &str) -> ProgressBar {
    use std::io::IsTerminal;
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let style = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} (eta {eta})",
    )
    .expect("progress template is valid");
    let bar = ProgressBar::with_draw_target(Some(len), target).with_style(style);
    bar.set_prefix(message.to_string());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn fresh_run_truncates_and_resume_keeps_earlier_epochs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        std::fs::write(&path, "{\"epoch\":0,\"old\":true}\n").unwrap();

        let mut log = RunLog::open(&path, None).unwrap();
        for epoch in 0..4 {
            log.write(&serde_json::json!({"epoch": epoch, "loss": 1.0}))
                .unwrap();
        }
        drop(log);
        // A kill in the middle of a write leaves a torn line.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"epoch\":4,\"lo").unwrap();
        drop(file);

        let mut log = RunLog::open(&path, Some(2)).unwrap();
        assert_eq!(
            lines(&path),
            ["{\"epoch\":0,\"loss\":1.0}", "{\"epoch\":1,\"loss\":1.0}"]
        );
        log.write(&serde_json::json!({"epoch": 2, "loss": 0.5}))
            .unwrap();
        assert_eq!(lines(&path).len(), 3);
        assert_eq!(lines(&path)[2], "{\"epoch\":2,\"loss\":0.5}");
    }

    #[test]
    fn resume_without_a_log_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("search.jsonl");
        let mut log = RunLog::resume(&path, 3).unwrap();
        log.write(&serde_json::json!({"epoch": 3})).unwrap();
        assert_eq!(lines(&path), ["{\"epoch\":3}"]);
    }
}
