//! `--resume FILE`: go on with the output of an earlier run that stopped, skipping every image
//! that already has a row there and appending the rows of the others.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::output::{csv_header, path_from_text, Format};

/// The largest earlier output read back (1 GiB: about ten million rows).
const MAX_RESUME_BYTES: u64 = 1 << 30;

/// An earlier output, read and opened to go on.
#[derive(Debug)]
pub struct Resumed {
    /// The file's format, read from its first row (the given format when it is empty).
    pub format: Format,
    /// Whether the file already has rows (and, for CSV, its header).
    pub continued: bool,
    /// The paths that have a row, as the earlier run wrote them.
    pub done: HashSet<PathBuf>,
    /// The file, opened to append after its last complete row.
    pub file: File,
}

/// Reads the rows of `path` (an output of hands-infer for a model with `labels`), drops a
/// last row cut short by the earlier run's end (said on stderr), and opens it to append.
/// An empty file starts afresh in `format`; a file without one complete row, or whose rows
/// are not this model's output, is refused untouched.
pub fn open(path: &Path, format: Format, labels: &[String]) -> anyhow::Result<Resumed> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("--resume {}", path.display()))?;
    if !metadata.is_file() {
        bail!(
            "--resume {}: not a regular file, not an earlier output",
            path.display()
        );
    }
    if metadata.len() > MAX_RESUME_BYTES {
        bail!(
            "--resume {}: {} bytes, more than the {MAX_RESUME_BYTES}-byte most read back",
            path.display(),
            metadata.len()
        );
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    File::open(path)
        .and_then(|f| f.take(MAX_RESUME_BYTES).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", path.display()))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    if complete == 0 && !bytes.is_empty() {
        // Not even a header: nothing here shows it is an output, so it is left alone.
        bail!(
            "--resume {}: {} bytes without one complete row; not an output of hands-infer (an empty file starts afresh)",
            path.display(),
            bytes.len()
        );
    }
    let (format, done) = if complete == 0 {
        (format, HashSet::new())
    } else {
        let rows = &bytes[..complete];
        let format = if rows.starts_with(b"{") {
            Format::Jsonl
        } else {
            Format::Csv
        };
        let done = match format {
            Format::Csv => csv_paths(rows, labels),
            Format::Jsonl => jsonl_paths(rows),
        }
        .with_context(|| format!("--resume {}: not an output of this model", path.display()))?;
        (format, done)
    };
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} to append", path.display()))?;
    if complete < bytes.len() {
        eprintln!(
            "hands-infer: {}: dropped a last row cut short ({} bytes); its image is predicted again",
            path.display(),
            bytes.len() - complete
        );
        file.set_len(complete as u64)
            .with_context(|| format!("cannot cut {} to its complete rows", path.display()))?;
    }
    Ok(Resumed {
        format,
        continued: complete > 0,
        done,
        file,
    })
}

/// The paths of a CSV output whose header is this model's.
fn csv_paths(rows: &[u8], labels: &[String]) -> anyhow::Result<HashSet<PathBuf>> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(rows);
    let header: Vec<String> = reader
        .headers()
        .context("no CSV header")?
        .iter()
        .map(str::to_string)
        .collect();
    let expected = csv_header(labels);
    if header != expected {
        bail!(
            "its header is `{}`, this model writes `{}`",
            header.join(","),
            expected.join(",")
        );
    }
    let mut done = HashSet::new();
    for (line, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("row {}", line + 1))?;
        done.insert(row_path(&record[0], line + 1)?);
    }
    Ok(done)
}

/// The paths of a JSON-lines output.
fn jsonl_paths(rows: &[u8]) -> anyhow::Result<HashSet<PathBuf>> {
    let text = std::str::from_utf8(rows).context("not UTF-8 text")?;
    let mut done = HashSet::new();
    for (line, row) in text.lines().enumerate() {
        let value: serde_json::Value =
            serde_json::from_str(row).with_context(|| format!("line {}", line + 1))?;
        let Some(path) = value.get("path").and_then(|p| p.as_str()) else {
            bail!("line {} has no \"path\"", line + 1);
        };
        done.insert(row_path(path, line + 1)?);
    }
    Ok(done)
}

fn row_path(text: &str, row: usize) -> anyhow::Result<PathBuf> {
    path_from_text(text)
        .with_context(|| format!("row {row}: `{text}` is not a path as hands-infer writes them"))
}
