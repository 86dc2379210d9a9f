//! Output rows: one per image, as CSV or JSON lines, with paths written losslessly.

use std::io::Write;
use std::path::Path;

use clap::ValueEnum;
use hands_infer::pipeline::Outcome;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `path,label,p_<label>...,error,model` with a header row.
    Csv,
    /// One JSON object per line: `{"path", "label", "probabilities": {label: p}, "model"}`
    /// or `{"path", "error", "model"}`.
    Jsonl,
}

/// Writes outcomes in one format into `W`; every row names the model that wrote it (its
/// [`identity`](hands_infer::Predictor::identity)).
pub enum RowWriter<W: Write> {
    /// CSV, with the number of labels.
    Csv(Box<csv::Writer<W>>, usize, String),
    /// JSON lines.
    Jsonl(W, Vec<String>, String),
}

impl<W: Write> RowWriter<W> {
    /// A writer for the model `model` with `labels`; CSV writes its header now unless
    /// `continued` (the rows go on an earlier output that has it).
    pub fn new(
        format: Format,
        out: W,
        labels: &[String],
        model: &str,
        continued: bool,
    ) -> anyhow::Result<Self> {
        Ok(match format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                if !continued {
                    writer.write_record(csv_header(labels))?;
                }
                RowWriter::Csv(Box::new(writer), labels.len(), model.to_string())
            }
            Format::Jsonl => RowWriter::Jsonl(out, labels.to_vec(), model.to_string()),
        })
    }

    /// Writes one row.
    pub fn write(&mut self, outcome: &Outcome) -> anyhow::Result<()> {
        let path = path_text(&outcome.path);
        match self {
            RowWriter::Csv(writer, labels, model) => {
                let mut record = vec![path];
                match &outcome.result {
                    Ok(p) => {
                        record.push(p.label.clone());
                        record.extend(p.probabilities.iter().map(|v| format!("{v:.6}")));
                        record.push(String::new());
                    }
                    Err(e) => {
                        record.resize(2 + *labels, String::new());
                        record.push(e.to_string());
                    }
                }
                record.push(model.clone());
                writer.write_record(&record)?;
            }
            RowWriter::Jsonl(out, labels, model) => {
                let value = match &outcome.result {
                    Ok(p) => {
                        let probabilities: serde_json::Map<String, serde_json::Value> = labels
                            .iter()
                            .zip(&p.probabilities)
                            .map(|(l, v)| (l.clone(), serde_json::json!(v)))
                            .collect();
                        serde_json::json!({
                            "path": path,
                            "label": p.label,
                            "probabilities": probabilities,
                            "model": model,
                        })
                    }
                    Err(e) => serde_json::json!({
                        "path": path,
                        "error": e.to_string(),
                        "model": model,
                    }),
                };
                // Serialised first, so that a failed write is a plain I/O error.
                let mut line = serde_json::to_vec(&value)?;
                line.push(b'\n');
                out.write_all(&line)?;
            }
        }
        Ok(())
    }

    /// Flushes buffered rows and hands back the output.
    pub fn finish(self) -> anyhow::Result<W> {
        Ok(match self {
            RowWriter::Csv(writer, ..) => writer.into_inner().map_err(|e| e.into_error())?,
            RowWriter::Jsonl(mut out, ..) => {
                out.flush()?;
                out
            }
        })
    }
}

/// The CSV header for `labels`: `path,label,p_<label>...,error,model`.
pub fn csv_header(labels: &[String]) -> Vec<String> {
    let mut header = vec!["path".to_string(), "label".to_string()];
    header.extend(labels.iter().map(|l| format!("p_{l}")));
    header.push("error".into());
    header.push("model".into());
    header
}

/// A path as text that reads back to its exact bytes: a byte that is not part of valid
/// UTF-8 becomes `\xNN` and a backslash `\\`; everything else is kept.
pub fn path_text(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    #[cfg(not(unix))]
    let bytes = path.as_os_str().as_encoded_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02X}"));
        }
    }
    out
}

/// The path [`path_text`] wrote as `text`; `None` when `text` holds an escape it never
/// writes (a lone backslash, `\x` without two hex digits).
pub fn path_from_text(text: &str) -> Option<std::path::PathBuf> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        rest = tail;
        if byte != b'\\' {
            bytes.push(byte);
            continue;
        }
        match rest {
            [b'\\', tail @ ..] => {
                bytes.push(b'\\');
                rest = tail;
            }
            [b'x', high, low, tail @ ..] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                let hex = [*high, *low];
                let hex = std::str::from_utf8(&hex).expect("ASCII hex digits");
                bytes.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
                rest = tail;
            }
            _ => return None,
        }
    }
    #[cfg(unix)]
    let path = <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes);
    #[cfg(not(unix))]
    let path = String::from_utf8(bytes).ok()?;
    Some(std::path::PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn paths_are_written_losslessly() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let text = |bytes: &[u8]| path_text(Path::new(OsStr::from_bytes(bytes)));
        assert_eq!(text("dir/hånd 1.jpg".as_bytes()), "dir/hånd 1.jpg");
        assert_eq!(text(b"a\xff.jpg"), "a\\xFF.jpg");
        assert_eq!(text(b"a\\xFF.jpg"), "a\\\\xFF.jpg");
        assert_eq!(text(b"a\xef\xbf\xbd.jpg"), "a\u{FFFD}.jpg");
        assert_ne!(text(b"a\xfe.jpg"), text(b"a\xff.jpg"));
    }

    #[cfg(unix)]
    #[test]
    fn paths_read_back_to_their_bytes() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        for bytes in [
            &b"dir/h\xc3\xa5nd 1.jpg"[..],
            b"a\xff.jpg",
            b"a\\xFF.jpg",
            b"\\\\\xfe\\",
            b"",
        ] {
            let path = Path::new(OsStr::from_bytes(bytes));
            assert_eq!(path_from_text(&path_text(path)).as_deref(), Some(path));
        }
        assert_eq!(path_from_text("a\\"), None);
        assert_eq!(path_from_text("a\\xZZ"), None);
        assert_eq!(path_from_text("a\\q"), None);
    }
}
