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
use hands_data::AspectFilter;

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

/// The keys of [`Selection`] naming the subjects: a card with neither was written before
/// they were recorded; one with only part of the selection is refused.
const SUBJECT_KEYS: [&str; 2] = ["train_subjects", "val_subjects"];

/// The aspects in `provenance.train` (`all` when the card does not say).
#[derive(Debug, Deserialize)]
struct TrainedAspects {
    #[serde(default)]
    aspect: AspectFilter,
}

impl Selection {
    /// The `provenance.train` of a card: the settings `args` and this selection.
    pub fn record(&self, args: &TrainArgs) -> Result<Value> {
        let mut record = serde_json::to_value(args)?;
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
        let train = &card.provenance.train;
        match serde_json::from_value(train.clone()) {
            Ok(selection) => Ok(Some(selection)),
            Err(_) if SUBJECT_KEYS.iter().all(|key| train.get(key).is_none()) => Ok(None),
            Err(e) => Err(e).context("provenance.train records only part of the selection"),
        }
    }
}

/// The aspects `card`'s model was trained on (`all` when the card does not say).
pub fn trained_aspects(card: &ModelCard) -> Result<AspectFilter> {
    let trained: TrainedAspects = serde_json::from_value(card.provenance.train.clone())
        .context("provenance.train does not hold hands-search's training record")?;
    Ok(trained.aspect)
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
        let mut card = card_with(record.clone());
        assert_eq!(trained_aspects(&card).unwrap(), AspectFilter::Palmar);
        assert_eq!(Selection::of_card(&card).unwrap(), Some(selection));

        card.provenance.train = serde_json::json!({"epochs": 5});
        assert_eq!(trained_aspects(&card).unwrap(), AspectFilter::All);
        assert_eq!(Selection::of_card(&card).unwrap(), None);

        // Only part of the selection: refused, not taken for an older card.
        let mut partial = record;
        partial.as_object_mut().unwrap().remove("val_subjects");
        card.provenance.train = partial;
        let err = format!("{:#}", Selection::of_card(&card).unwrap_err());
        assert!(err.contains("val_subjects"), "{err}");
    }

    /// The shipped model's card with `train` as its training record.
    fn card_with(train: Value) -> ModelCard {
        let mut card: ModelCard =
            serde_json::from_str(include_str!("../../models/pretrained/hands.card.json")).unwrap();
        card.provenance.train = train;
        card
    }
}
