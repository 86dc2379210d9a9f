//! `--group-by` and `--groups`: one answer per group of photos (each folder, or the groups a
//! CSV names, e.g. one person each), the group's photos combined as
//! [`hands_infer::Predictor::predict_group`] combines them, written as one CSV row per group.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context};
use hands_infer::pipeline::Outcome;
use hands_infer::GroupPrediction;

/// How images are put into groups.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    /// The folder holding each image is its group.
    Folder,
    /// A CSV file with columns `path` and `group` names each image's group.
    Csv(PathBuf),
}

impl FromStr for GroupBy {
    type Err = String;

    fn from_str(s: &str) -> Result<GroupBy, String> {
        match s.strip_prefix("csv:") {
            Some(file) if !file.is_empty() => Ok(GroupBy::Csv(PathBuf::from(file))),
            _ if s == "folder" => Ok(GroupBy::Folder),
            _ => Err(format!("`{s}`: expected `folder` or `csv:FILE`")),
        }
    }
}

/// The photos' answers gathered by group as they come.
#[derive(Debug)]
pub struct Groups {
    /// The group of each image file, by the path the run lists it under.
    group_of: HashMap<PathBuf, String>,
    /// Each group's predicted probabilities and count of failed photos.
    gathered: BTreeMap<String, (Vec<Vec<f32>>, usize)>,
}

impl Groups {
    /// The groups of `files` (the run's images) by `by`. A CSV must name every image once,
    /// each with a non-empty group, and nothing else: an unknown or repeated path, an empty
    /// group or an image without a group is refused, naming the file and line.
    pub fn new(by: &GroupBy, files: &[PathBuf]) -> anyhow::Result<Groups> {
        let group_of = match by {
            GroupBy::Folder => files
                .iter()
                .map(|f| {
                    let folder = f.parent().unwrap_or(Path::new("."));
                    (f.clone(), folder.display().to_string())
                })
                .collect(),
            GroupBy::Csv(csv) => from_csv(csv, files)?,
        };
        let gathered = group_of
            .values()
            .map(|g| (g.clone(), (Vec::new(), 0)))
            .collect();
        Ok(Groups { group_of, gathered })
    }

    /// Takes one photo's outcome into its group (an unreadable folder has none).
    pub fn add(&mut self, outcome: &Outcome) {
        let Some(group) = self.group_of.get(&outcome.path) else {
            return;
        };
        let entry = self.gathered.get_mut(group).expect("every group gathered");
        match &outcome.result {
            Ok(prediction) => entry.0.push(prediction.probabilities.clone()),
            Err(_) => entry.1 += 1,
        }
    }

    /// The CSV of the groups: `group,images,failed,label,p_LABEL...,error`, one row per
    /// group in name order, combined at the card's group `temperature`; a group with no
    /// photo predicted has an error and no label.
    pub fn csv(
        &self,
        labels: &[String],
        min_confidence: Option<f32>,
        temperature: f64,
    ) -> anyhow::Result<Vec<u8>> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut header = vec![
            "group".to_string(),
            "images".into(),
            "failed".into(),
            "label".into(),
        ];
        header.extend(labels.iter().map(|l| format!("p_{l}")));
        header.push("error".into());
        writer.write_record(&header)?;
        for (group, (rows, failed)) in &self.gathered {
            let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            let mut record = vec![group.clone(), rows.len().to_string(), failed.to_string()];
            match GroupPrediction::combine(&refs, *failed, labels, min_confidence, temperature) {
                Some(answer) => {
                    record.push(answer.label);
                    record.extend(answer.probabilities.iter().map(|p| format!("{p:.6}")));
                    record.push(String::new());
                }
                None => {
                    record.push(String::new());
                    record.extend(labels.iter().map(|_| String::new()));
                    record.push("no photo of the group could be predicted".into());
                }
            }
            writer.write_record(&record)?;
        }
        writer.into_inner().context("CSV buffer")
    }
}

/// The group of each of `files` as the CSV `csv` names it (paths compared by file identity
/// after resolving them, relative ones from the working folder).
fn from_csv(csv: &Path, files: &[PathBuf]) -> anyhow::Result<HashMap<PathBuf, String>> {
    let resolved: HashMap<PathBuf, &PathBuf> = files
        .iter()
        .filter_map(|f| Some((std::fs::canonicalize(f).ok()?, f)))
        .collect();
    let mut reader = csv::Reader::from_path(csv)
        .with_context(|| format!("--group-by csv:{}: cannot read it", csv.display()))?;
    let header = reader.headers()?.clone();
    let column = |name: &str| {
        header.iter().position(|h| h == name).with_context(|| {
            format!(
                "{}: no column `{name}` (a group file has the columns path,group; its header \
                 is {:?})",
                csv.display(),
                header.iter().collect::<Vec<_>>().join(",")
            )
        })
    };
    let (path_column, group_column) = (column("path")?, column("group")?);
    let mut group_of: HashMap<PathBuf, String> = HashMap::new();
    let mut line_of: HashMap<PathBuf, u64> = HashMap::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("cannot read {}", csv.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let path = record.get(path_column).unwrap_or_default();
        let group = record.get(group_column).unwrap_or_default().trim();
        let at = || format!("{} line {line}", csv.display());
        if group.is_empty() {
            bail!("{}: {path} has an empty group", at());
        }
        let file = std::fs::canonicalize(path)
            .ok()
            .and_then(|p| resolved.get(&p).map(|f| (*f).clone()))
            .with_context(|| format!("{}: {path} is not among the images given", at()))?;
        if let Some(first) = line_of.insert(file.clone(), line) {
            bail!("{}: {path} is listed again (first on line {first})", at());
        }
        group_of.insert(file, group.to_string());
    }
    if let Some(missing) = files.iter().find(|f| !group_of.contains_key(*f)) {
        bail!(
            "{}: no group for {} (the file must name every image given)",
            csv.display(),
            missing.display()
        );
    }
    Ok(group_of)
}
