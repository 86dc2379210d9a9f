//! What a trained model's card records of its training in `provenance.train`: written by
//! `train`, read back by `eval`. It holds the training settings (less the run folder and
//! `--resume`, which say nothing of the model) and what model selection saw, so that `eval`
//! can use the aspects the model was trained on and refuse a split that tests on subjects it
//! has seen.

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use hands_models::ModelCard;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::args::train::TrainArgs;
use crate::data::AspectFilter;

/// What model selection saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The epoch whose weights were kept (0-based).
    pub selected_epoch: usize,
    /// Where the split came from (a split file, or drawn with the seed).
    pub split: String,
    /// The subjects the weights were trained on.
    pub train_subjects: BTreeSet<String>,
    /// The subjects the epoch was selected on.
    pub val_subjects: BTreeSet<String>,
}

/// `provenance.train` as `eval` reads it; fields absent from older cards default.
#[derive(Debug, Deserialize)]
struct Recorded {
    /// The aspects trained on (`all` when the card does not say).
    #[serde(default)]
    aspect: AspectFilter,
    /// Absent from cards written before the subjects were recorded.
    #[serde(flatten)]
    selection: Option<Selection>,
}

impl Selection {
    /// The `provenance.train` of a card: the settings `args` and this selection.
    pub fn record(&self, args: &TrainArgs) -> Result<Value> {
        let mut settings = args.clone();
        settings.run.out = None;
        settings.run.resume = false;
        let mut record = serde_json::to_value(&settings)?;
        if let (Value::Object(map), Value::Object(selection)) =
            (&mut record, serde_json::to_value(self)?)
        {
            map.remove("out");
            map.remove("resume");
            map.extend(selection);
        }
        Ok(record)
    }

    /// The selection `card` records, `None` for a card written before it was recorded.
    pub fn of_card(card: &ModelCard) -> Result<Option<Selection>> {
        Ok(recorded(card)?.selection)
    }
}

/// The aspects `card`'s model was trained on (`all` when the card does not say).
pub fn trained_aspects(card: &ModelCard) -> Result<AspectFilter> {
    Ok(recorded(card)?.aspect)
}

fn recorded(card: &ModelCard) -> Result<Recorded> {
    serde_json::from_value(card.provenance.train.clone())
        .context("provenance.train does not hold hands-search's training record")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_reads_back_and_older_cards_default() {
        let mut args = TrainArgs::new("data", "DARTS_V2");
        args.data.aspect = AspectFilter::Palmar;
        args.run.out = Some("runs/x".into());
        let selection = Selection {
            selected_epoch: 3,
            split: "split.json".into(),
            train_subjects: ["a".to_string(), "b".to_string()].into(),
            val_subjects: ["c".to_string()].into(),
        };
        let record = selection.record(&args).unwrap();
        assert!(record.get("out").is_none() && record.get("resume").is_none());
        assert_eq!(record["init_channels"], 16);
        let read: Recorded = serde_json::from_value(record).unwrap();
        assert_eq!(read.aspect, AspectFilter::Palmar);
        assert_eq!(read.selection, Some(selection));

        let older: Recorded = serde_json::from_value(serde_json::json!({"epochs": 5})).unwrap();
        assert_eq!(older.aspect, AspectFilter::All);
        assert_eq!(older.selection, None);
    }
}
