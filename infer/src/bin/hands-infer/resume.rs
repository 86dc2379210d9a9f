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

/// Reads the rows of `path` (an output of hands-infer for the model `model` with `labels`),
/// drops a last row cut short by the earlier run's end (said on stderr), and opens it to
/// append. An empty file starts afresh in `format`; a file without one complete row, or
/// whose rows are not this model's output (another header, another model's rows, rows
/// that are not hands-infer's), is refused untouched.
pub fn open(
    path: &Path,
    format: Format,
    labels: &[String],
    model: &str,
) -> anyhow::Result<Resumed> {
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
    if !bytes.is_empty() && !bytes.contains(&b'\n') {
        // Not even a header: nothing here shows it is an output, so it is left alone.
        bail!(
            "--resume {}: {} bytes without one complete row; not an output of hands-infer (an empty file starts afresh)",
            path.display(),
            bytes.len()
        );
    }
    let (format, rows) = if bytes.is_empty() {
        (format, Rows::default())
    } else {
        let format = if bytes.starts_with(b"{") {
            Format::Jsonl
        } else {
            Format::Csv
        };
        let rows = match format {
            Format::Csv => csv_rows(&bytes, labels, model),
            Format::Jsonl => jsonl_rows(&bytes, labels, model),
        }
        .with_context(|| format!("--resume {}: not an output of this model", path.display()))?;
        (format, rows)
    };
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} to append", path.display()))?;
    if rows.complete < bytes.len() {
        eprintln!(
            "hands-infer: {}: dropped a last row cut short ({} bytes); its image is predicted again",
            path.display(),
            bytes.len() - rows.complete
        );
        file.set_len(rows.complete as u64)
            .with_context(|| format!("cannot cut {} to its complete rows", path.display()))?;
    }
    Ok(Resumed {
        format,
        continued: rows.complete > 0,
        done: rows.done,
        file,
    })
}

/// What an earlier output holds: the paths with a row, and the length of its complete rows
/// (the header included).
#[derive(Debug, Default)]
struct Rows {
    done: HashSet<PathBuf>,
    complete: usize,
}

/// The rows of a CSV output whose header is this model's and whose rows name `model`. A
/// last row is complete when it reads back to exactly its bytes, newline included (a row
/// cut inside a quoted file name, even just after a newline in it, is not).
fn csv_rows(bytes: &[u8], labels: &[String], model: &str) -> anyhow::Result<Rows> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(false)
        .from_reader(bytes);
    let expected = csv_header(labels);
    let mut record = csv::ByteRecord::new();
    let mut rows = Rows::default();
    let mut line = 0;
    loop {
        let start = reader.position().byte() as usize;
        if !reader.read_byte_record(&mut record)? {
            break;
        }
        let end = reader.position().byte() as usize;
        if end == bytes.len() && !written_as(&record, &bytes[start..end]) {
            break; // cut short: dropped
        }
        if line == 0 {
            let header: Vec<String> = record
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            if header != expected {
                bail!(
                    "its header is `{}`, this model writes `{}`",
                    header.join(","),
                    expected.join(",")
                );
            }
        } else {
            if record.len() != expected.len() {
                bail!(
                    "row {line} has {} fields, this model's rows have {}",
                    record.len(),
                    expected.len()
                );
            }
            let field = |i: usize| String::from_utf8_lossy(&record[i]).into_owned();
            check_model(&field(record.len() - 1), model, line)?;
            rows.done.insert(row_path(&field(0), line)?);
        }
        rows.complete = end;
        line += 1;
    }
    if line == 0 {
        bail!("its first row is cut short: not a header");
    }
    Ok(rows)
}

/// Whether `raw` is exactly what the CSV writer writes for `record`.
fn written_as(record: &csv::ByteRecord, raw: &[u8]) -> bool {
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(raw.len() + 1));
    writer.write_byte_record(record).is_ok()
        && writer.into_inner().is_ok_and(|written| written == raw)
}

/// The rows of a JSON-lines output: each one this model's row for one path (a label and
/// the probability of each of `labels`, or an error). A newline is only ever a row's end
/// in JSON lines (strings escape theirs), so a last line without one is cut short.
fn jsonl_rows(bytes: &[u8], labels: &[String], model: &str) -> anyhow::Result<Rows> {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = std::str::from_utf8(&bytes[..complete]).context("not UTF-8 text")?;
    let mut done = HashSet::new();
    for (line, row) in text.lines().enumerate() {
        let line = line + 1;
        let value: serde_json::Value =
            serde_json::from_str(row).with_context(|| format!("line {line}"))?;
        let field = |name: &str| value.get(name).and_then(|v| v.as_str());
        let Some(path) = field("path") else {
            bail!("line {line} has no \"path\"");
        };
        check_model(field("model").unwrap_or(""), model, line)?;
        let predicted = field("label").is_some()
            && value
                .get("probabilities")
                .and_then(|p| p.as_object())
                .is_some_and(|p| {
                    p.len() == labels.len() && labels.iter().all(|l| p.contains_key(l))
                });
        if !predicted && field("error").is_none() {
            bail!(
                "line {line} is neither a prediction over {} nor an error",
                labels.join(", ")
            );
        }
        done.insert(row_path(path, line)?);
    }
    Ok(Rows { done, complete })
}

/// Refuses a row written by another model than `model` (or by an older hands-infer, which
/// did not name it).
fn check_model(found: &str, model: &str, row: usize) -> anyhow::Result<()> {
    if found.is_empty() {
        bail!(
            "row {row} does not name the model that wrote it (an output of an older hands-infer); start a new output"
        );
    }
    if found != model {
        bail!("row {row} was written by model {found}, this model is {model}");
    }
    Ok(())
}

fn row_path(text: &str, row: usize) -> anyhow::Result<PathBuf> {
    path_from_text(text)
        .with_context(|| format!("row {row}: `{text}` is not a path as hands-infer writes them"))
}
