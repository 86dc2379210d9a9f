//! Output rows: one per image, as CSV or JSON lines.

use std::io::Write;

use clap::ValueEnum;
use hands_infer::pipeline::Outcome;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `path,label,p_<label>...,error` with a header row.
    Csv,
    /// One JSON object per line: `{"path", "label", "probabilities": {label: p}}` or
    /// `{"path", "error"}`.
    Jsonl,
}

/// Writes outcomes in one format.
pub enum RowWriter {
    /// CSV, with the number of labels.
    Csv(Box<csv::Writer<Box<dyn Write>>>, usize),
    /// JSON lines.
    Jsonl(Box<dyn Write>, Vec<String>),
}

impl RowWriter {
    /// A writer for `labels`; CSV writes its header now.
    pub fn new(format: Format, out: Box<dyn Write>, labels: &[String]) -> anyhow::Result<Self> {
        Ok(match format {
            Format::Csv => {
                let mut writer = csv::Writer::from_writer(out);
                let mut header = vec!["path".to_string(), "label".to_string()];
                header.extend(labels.iter().map(|l| format!("p_{l}")));
                header.push("error".into());
                writer.write_record(&header)?;
                RowWriter::Csv(Box::new(writer), labels.len())
            }
            Format::Jsonl => RowWriter::Jsonl(out, labels.to_vec()),
        })
    }

    /// Writes one row.
    pub fn write(&mut self, outcome: &Outcome) -> anyhow::Result<()> {
        let path = outcome.path.display().to_string();
        match self {
            RowWriter::Csv(writer, labels) => {
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
                writer.write_record(&record)?;
            }
            RowWriter::Jsonl(out, labels) => {
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
                        })
                    }
                    Err(e) => serde_json::json!({ "path": path, "error": e.to_string() }),
                };
                serde_json::to_writer(&mut *out, &value)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// Flushes buffered rows.
    pub fn finish(self) -> anyhow::Result<()> {
        match self {
            RowWriter::Csv(mut writer, _) => writer.flush()?,
            RowWriter::Jsonl(mut out, _) => out.flush()?,
        }
        Ok(())
    }
}
