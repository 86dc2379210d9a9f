//! The 11K Hands layout: `HandInfo.csv` (quoted fields, CRLF, 7-digit ids) and its images.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::aspect::canonical_aspect;
use super::{AspectFilter, Dataset, Error, Sample, Source};

/// The metadata file's name in the 11K Hands layout.
pub const CSV_NAME: &str = "HandInfo.csv";

/// The labels of the 11K Hands data, sorted: label 0 is female, 1 is male.
pub const HANDS_LABELS: [&str; 2] = ["female", "male"];

/// The columns the loader reads; the others (age, skinColor, ...) may be absent.
const REQUIRED: [&str; 4] = ["id", "gender", "aspectOfHand", "imageName"];

/// One record of `HandInfo.csv`, the columns the loader uses.
#[derive(Deserialize)]
struct Row {
    id: String,
    gender: String,
    #[serde(rename = "aspectOfHand")]
    aspect: String,
    #[serde(rename = "imageName")]
    image_name: String,
}

/// The image folder of a CSV: `images/` beside it when that exists, else its own folder.
pub(crate) fn images_beside(csv: &Path) -> PathBuf {
    let parent = csv.parent().unwrap_or(Path::new(""));
    let images = parent.join("images");
    if images.is_dir() {
        images
    } else {
        parent.to_path_buf()
    }
}

pub(crate) fn load(csv_path: &Path, images: &Path, filter: AspectFilter) -> Result<Dataset, Error> {
    let bytes = std::fs::read(csv_path).map_err(|e| Error::io(csv_path, e))?;
    let lines = LineIndex::new(&bytes);
    let csv_error = |e: csv::Error| lines.error(csv_path, e);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let headers = reader.headers().map_err(csv_error)?.clone();
    for column in REQUIRED {
        if !headers.iter().any(|h| h == column) {
            return Err(Error::MissingColumn {
                path: csv_path.to_path_buf(),
                column: column.to_string(),
                header: headers.iter().collect::<Vec<_>>().join(", "),
            });
        }
    }

    let mut samples = Vec::new();
    // subject -> (label, line of its first record)
    let mut subjects: HashMap<String, (usize, u64)> = HashMap::new();
    // image name -> line of its record
    let mut images_seen: HashMap<String, u64> = HashMap::new();
    let mut record = csv::StringRecord::new();
    while reader.read_record(&mut record).map_err(csv_error)? {
        let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
        let row: Row = record
            .deserialize(Some(&headers))
            .map_err(|e| Error::CsvRecord {
                path: csv_path.to_path_buf(),
                line,
                reason: match e.kind() {
                    csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
                    _ => e.to_string(),
                },
            })?;
        let bad = |column: &str, value: &str, expected: &str| Error::BadValue {
            path: csv_path.to_path_buf(),
            line,
            column: column.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        };

        if row.id.is_empty() {
            return Err(bad("id", "", "a subject id"));
        }
        let gender = row.gender.to_ascii_lowercase();
        let label = HANDS_LABELS
            .iter()
            .position(|g| *g == gender)
            .ok_or_else(|| bad("gender", &row.gender, "male or female"))?;
        let aspect = canonical_aspect(&row.aspect).ok_or_else(|| {
            bad(
                "aspectOfHand",
                &row.aspect,
                "dorsal left, dorsal right, palmar left or palmar right",
            )
        })?;
        let name = Path::new(&row.image_name);
        let plain_name = name.components().count() == 1
            && matches!(
                name.components().next(),
                Some(std::path::Component::Normal(_))
            );
        if !plain_name {
            return Err(bad("imageName", &row.image_name, "a plain file name"));
        }

        let (first_label, first_line) = *subjects.entry(row.id.clone()).or_insert((label, line));
        if first_label != label {
            return Err(Error::Inconsistent {
                path: csv_path.to_path_buf(),
                line,
                reason: format!(
                    "subject {} is {} here but {} on line {first_line}",
                    row.id, HANDS_LABELS[label], HANDS_LABELS[first_label]
                ),
            });
        }
        if let Some(previous) = images_seen.insert(row.image_name.clone(), line) {
            return Err(Error::Inconsistent {
                path: csv_path.to_path_buf(),
                line,
                reason: format!(
                    "image {} is already listed on line {previous}",
                    row.image_name
                ),
            });
        }

        if !filter.accepts(aspect) {
            continue;
        }
        let path = images.join(name);
        if !path.is_file() {
            return Err(Error::MissingImage {
                path,
                csv: csv_path.to_path_buf(),
                line,
            });
        }
        samples.push(Sample {
            path,
            subject: row.id,
            label,
            aspect: Some(aspect.to_string()),
        });
    }

    Dataset::from_samples(
        Source::Hands {
            csv: csv_path.to_path_buf(),
            images: images.to_path_buf(),
            filter,
        },
        HANDS_LABELS.iter().map(|l| l.to_string()).collect(),
        samples,
    )
}

/// Line numbers of byte offsets in a CSV file.
///
/// The `csv` crate's own line numbers are one short after a CRLF line end (it counts the
/// `\n` of a `\r\n` only when it reads the next record), so lines are counted here from
/// the byte offsets it reports.
struct LineIndex<'a> {
    bytes: &'a [u8],
    newlines: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(bytes: &'a [u8]) -> LineIndex<'a> {
        let newlines = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        LineIndex { bytes, newlines }
    }

    /// The 1-based line of the record the parser reports at `byte` (which may point at
    /// the end of the previous line).
    fn line_at(&self, byte: u64) -> u64 {
        let mut start = (byte as usize).min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\r' | b'\n') {
            start += 1;
        }
        1 + self.newlines.partition_point(|&n| n < start) as u64
    }

    /// A parse error with the line it happened on, where the parser reports one.
    fn error(&self, path: &Path, e: csv::Error) -> Error {
        let line = e.position().map(|p| self.line_at(p.byte()));
        let reason = match e.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => Some(format!("{len} fields where the header has {expected_len}")),
            csv::ErrorKind::Utf8 { err, .. } => Some(format!("invalid UTF-8: {err}")),
            csv::ErrorKind::Deserialize { err, .. } => Some(err.to_string()),
            _ => None,
        };
        match (line, reason) {
            (Some(line), Some(reason)) => Error::CsvRecord {
                path: path.to_path_buf(),
                line,
                reason,
            },
            _ => Error::csv(path, e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LineIndex;

    #[test]
    fn lines_of_crlf_and_lf_records() {
        for data in ["h,i\r\na,1\r\nb,2\r\n", "h,i\na,1\nb,2\n"] {
            let index = LineIndex::new(data.as_bytes());
            let mut reader = csv::Reader::from_reader(data.as_bytes());
            let lines: Vec<u64> = reader
                .records()
                .map(|r| index.line_at(r.unwrap().position().unwrap().byte()))
                .collect();
            assert_eq!(lines, [2, 3], "{data:?}");
        }
    }
}
