//! The 11K Hands layout: `HandInfo.csv` (quoted fields, CRLF, 7-digit ids) and its images.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::aspect::canonical_aspect;
use super::{AspectFilter, Dataset, Error, ImageSource, Sample, Source};

/// The metadata file's name in the 11K Hands layout.
pub const CSV_NAME: &str = "HandInfo.csv";

/// The labels of the 11K Hands data, sorted: label 0 is female, 1 is male.
pub const HANDS_LABELS: [&str; 2] = ["female", "male"];

/// Largest `HandInfo.csv` read, in bytes: the full 11K Hands file (11,076 rows) takes
/// about 0.8 MB.
pub const MAX_CSV_BYTES: u64 = 16 << 20;

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
    let bytes = read_bounded(csv_path).map_err(|e| Error::io(csv_path, e))?;
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
    let mut listed = Listed::default();
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
        let (label, aspect) = validate_row(&row, csv_path, line)?;
        let name = Path::new(&row.image_name);
        listed.add(&row, label, csv_path, line)?;

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
            subject: row.id,
            label,
            aspect: Some(aspect.to_string()),
            image_source: ImageSource::of_file(&path),
            path,
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

/// The label and canonical aspect of a CSV row, after checking its id, gender, aspect and
/// image name (a plain file name, so that no row reaches outside the image folder).
fn validate_row(row: &Row, csv_path: &Path, line: u64) -> Result<(usize, &'static str), Error> {
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
    Ok((label, aspect))
}

/// The subjects and images listed so far, to refuse a subject listed with two genders and
/// an image listed twice.
#[derive(Default)]
struct Listed {
    /// Subject -> its label and the line of its first record.
    subjects: HashMap<String, (usize, u64)>,
    /// Image name -> the line of its record.
    images: HashMap<String, u64>,
}

impl Listed {
    /// Records `row` (of label `label`, on `line`), refusing it when it contradicts an
    /// earlier row.
    fn add(&mut self, row: &Row, label: usize, csv_path: &Path, line: u64) -> Result<(), Error> {
        let (first_label, first_line) =
            *self.subjects.entry(row.id.clone()).or_insert((label, line));
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
        if let Some(previous) = self.images.insert(row.image_name.clone(), line) {
            return Err(Error::Inconsistent {
                path: csv_path.to_path_buf(),
                line,
                reason: format!(
                    "image {} is already listed on line {previous}",
                    row.image_name
                ),
            });
        }
        Ok(())
    }
}

/// The bytes of `path`, a regular file of at most [`MAX_CSV_BYTES`]: a FIFO or a device is
/// refused before it is opened, an oversized file before it is read whole.
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::{Error as IoError, ErrorKind};
    if !std::fs::metadata(path)?.is_file() {
        return Err(IoError::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_CSV_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CSV_BYTES {
        return Err(IoError::new(
            ErrorKind::InvalidData,
            format!("larger than {MAX_CSV_BYTES} bytes: not an 11K Hands HandInfo.csv"),
        ));
    }
    Ok(bytes)
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
    use super::*;
    use proptest::prelude::*;

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

    #[cfg(unix)]
    #[test]
    fn only_bounded_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join(CSV_NAME);
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        // Opening a FIFO without a writer would block forever.
        let err = load(&fifo, dir.path(), AspectFilter::All)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not a regular file") && err.contains(CSV_NAME),
            "{err}"
        );

        let zero = dir.path().join("zero.csv");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = load(&zero, dir.path(), AspectFilter::All)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a regular file"), "{err}");

        // Sparse: no disk space, but larger than any HandInfo.csv.
        let huge = dir.path().join("huge.csv");
        let file = std::fs::File::create(&huge).unwrap();
        file.set_len(MAX_CSV_BYTES + 1).unwrap();
        let err = load(&huge, dir.path(), AspectFilter::All)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("larger than") && err.contains("huge.csv"),
            "{err}"
        );
    }

    /// One generated row: subject, gender, aspect, image name.
    type Row4 = (String, &'static str, &'static str, String);

    /// A valid HandInfo.csv's rows: subjects of both genders, every image listed once, in
    /// the loader's accepted spellings (any case, extra spaces in the aspect).
    fn rows() -> impl Strategy<Value = Vec<Row4>> {
        let subject = (0u32..10_000_000, proptest::bool::ANY);
        proptest::collection::btree_map(subject.0, subject.1, 2..8)
            .prop_flat_map(|subjects| {
                let mut subjects: Vec<(u32, bool)> = subjects.into_iter().collect();
                // Both genders present.
                subjects[0].1 = true;
                subjects[1].1 = false;
                let images = proptest::collection::vec(
                    (
                        0..subjects.len(),
                        proptest::sample::select(crate::ASPECTS.to_vec()),
                    ),
                    1..20,
                );
                (Just(subjects), images)
            })
            .prop_map(|(subjects, images)| {
                images
                    .into_iter()
                    .enumerate()
                    .map(|(i, (s, aspect))| {
                        let (id, male) = subjects[s];
                        let gender = if male { "male" } else { "female" };
                        (
                            format!("{id:07}"),
                            gender,
                            aspect,
                            format!("Hand_{i:07}.jpg"),
                        )
                    })
                    .collect()
            })
    }

    /// The CSV text of `rows`: columns in the given order (with an extra `age`), fields
    /// quoted or not, CRLF or LF line ends, gender and aspect in any case.
    fn csv_text(rows: &[Row4], order: &[usize], quote: bool, crlf: bool, upper: bool) -> String {
        let header = ["id", "gender", "aspectOfHand", "imageName", "age"];
        let end = if crlf { "\r\n" } else { "\n" };
        let field = |v: &str| {
            if quote {
                format!("\"{v}\"")
            } else {
                v.to_string()
            }
        };
        let mut text: String = order
            .iter()
            .map(|&c| header[c])
            .collect::<Vec<_>>()
            .join(",");
        text.push_str(end);
        for (id, gender, aspect, name) in rows {
            let (gender, aspect) = if upper {
                (
                    gender.to_uppercase(),
                    aspect.replace(' ', "  ").to_uppercase(),
                )
            } else {
                (gender.to_string(), aspect.to_string())
            };
            let values = [id.clone(), gender, aspect, name.clone(), "27".into()];
            let line: Vec<String> = order.iter().map(|&c| field(&values[c])).collect();
            text.push_str(&line.join(","));
            text.push_str(end);
        }
        text
    }

    /// A data folder with `csv` and an empty file for every image name in `rows`.
    fn folder(csv: &[u8], rows: &[Row4]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CSV_NAME), csv).unwrap();
        for (_, _, _, name) in rows {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        dir
    }

    /// Text near a HandInfo.csv: its tokens and a few hostile ones, in any order.
    fn csv_like() -> impl Strategy<Value = Vec<u8>> {
        let token = proptest::sample::select(vec![
            "id",
            "gender",
            "aspectOfHand",
            "imageName",
            ",",
            "\"",
            "\r\n",
            "\n",
            "\r",
            "male",
            "female",
            "dorsal right",
            "palmar left",
            "0000000",
            "Hand_0000000.jpg",
            "../x.jpg",
            "/",
            " ",
            "\u{feff}",
            "\u{0}",
            "é",
            "\u{fffd}",
        ]);
        proptest::collection::vec(token, 0..80).prop_map(|t| t.concat().into_bytes())
    }

    /// Loads `csv` in a folder that holds the images of `rows`: it is a dataset or an error
    /// naming the CSV file, never a panic.
    fn load_or_named_error(csv: &[u8], rows: &[Row4]) {
        let dir = folder(csv, rows);
        if let Err(e) = load(&dir.path().join(CSV_NAME), dir.path(), AspectFilter::All) {
            let msg = e.to_string();
            assert!(msg.contains(CSV_NAME), "{msg}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn a_generated_csv_reads_back_as_its_rows(
            rows in rows(),
            order in Just(vec![0usize, 1, 2, 3, 4]).prop_shuffle(),
            quote in proptest::bool::ANY,
            crlf in proptest::bool::ANY,
            upper in proptest::bool::ANY,
        ) {
            let text = csv_text(&rows, &order, quote, crlf, upper);
            let dir = folder(text.as_bytes(), &rows);
            let dataset = load(&dir.path().join(CSV_NAME), dir.path(), AspectFilter::All).unwrap();
            prop_assert_eq!(dataset.samples().len(), rows.len());
            for (sample, (id, gender, aspect, name)) in dataset.samples().iter().zip(&rows) {
                prop_assert_eq!(&sample.path, &dir.path().join(name));
                prop_assert_eq!(&sample.subject, id);
                prop_assert_eq!(HANDS_LABELS[sample.label], *gender);
                prop_assert_eq!(sample.aspect.as_deref(), Some(*aspect));
            }
        }

        #[test]
        fn csv_like_bytes_never_panic(csv in csv_like()) {
            load_or_named_error(&csv, &[]);
        }

        #[test]
        fn edited_csvs_never_panic(
            rows in rows(),
            at in any::<proptest::sample::Index>(),
            cut in 0usize..16,
            insert in proptest::collection::vec(any::<u8>(), 0..6),
        ) {
            let text = csv_text(&rows, &[0, 1, 2, 3, 4], true, true, false).into_bytes();
            let i = at.index(text.len());
            let end = (i + cut).min(text.len());
            let edited = [&text[..i], &insert, &text[end..]].concat();
            load_or_named_error(&edited, &rows);
        }
    }
}
