//! Which hand aspects (dorsal / palmar, left / right) a dataset keeps.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Choice;

/// The four aspects of the 11K Hands data, as written in its `aspectOfHand` column.
pub const ASPECTS: [&str; 4] = ["dorsal left", "dorsal right", "palmar left", "palmar right"];

/// Keeps the images of some hand aspects only; `All` keeps everything.
///
/// Its command-line and JSON names are kebab-case: `all`, `dorsal`, `palmar`, `dorsal-left`,
/// `dorsal-right`, `palmar-left`, `palmar-right`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AspectFilter {
    /// Every image.
    #[default]
    All,
    /// Backs of hands, left and right.
    Dorsal,
    /// Palms, left and right.
    Palmar,
    /// Backs of left hands.
    DorsalLeft,
    /// Backs of right hands.
    DorsalRight,
    /// Palms of left hands.
    PalmarLeft,
    /// Palms of right hands.
    PalmarRight,
}

impl AspectFilter {
    /// Whether an image of `aspect` (e.g. `"dorsal right"`, one of [`ASPECTS`]) is kept.
    pub fn accepts(self, aspect: &str) -> bool {
        match self {
            AspectFilter::All => true,
            AspectFilter::Dorsal => aspect.starts_with("dorsal "),
            AspectFilter::Palmar => aspect.starts_with("palmar "),
            AspectFilter::DorsalLeft => aspect == "dorsal left",
            AspectFilter::DorsalRight => aspect == "dorsal right",
            AspectFilter::PalmarLeft => aspect == "palmar left",
            AspectFilter::PalmarRight => aspect == "palmar right",
        }
    }

    /// The kebab-case name, as on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            AspectFilter::All => "all",
            AspectFilter::Dorsal => "dorsal",
            AspectFilter::Palmar => "palmar",
            AspectFilter::DorsalLeft => "dorsal-left",
            AspectFilter::DorsalRight => "dorsal-right",
            AspectFilter::PalmarLeft => "palmar-left",
            AspectFilter::PalmarRight => "palmar-right",
        }
    }
}

impl fmt::Display for AspectFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Choice for AspectFilter {
    const WHAT: &'static str = "aspect filter";
    const ALL: &'static [AspectFilter] = &[
        AspectFilter::All,
        AspectFilter::Dorsal,
        AspectFilter::Palmar,
        AspectFilter::DorsalLeft,
        AspectFilter::DorsalRight,
        AspectFilter::PalmarLeft,
        AspectFilter::PalmarRight,
    ];

    fn name(self) -> &'static str {
        self.as_str()
    }

    fn about(self) -> &'static str {
        match self {
            AspectFilter::All => "every image",
            AspectFilter::Dorsal => "backs of hands, left and right",
            AspectFilter::Palmar => "palms, left and right",
            AspectFilter::DorsalLeft => "backs of left hands",
            AspectFilter::DorsalRight => "backs of right hands",
            AspectFilter::PalmarLeft => "palms of left hands",
            AspectFilter::PalmarRight => "palms of right hands",
        }
    }
}

/// The canonical spelling of an `aspectOfHand` value (trimmed, lower case, single spaces), or
/// `None` when it is not one of [`ASPECTS`].
pub(crate) fn canonical_aspect(value: &str) -> Option<&'static str> {
    let words: Vec<String> = value
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    let joined = words.join(" ");
    ASPECTS.iter().copied().find(|a| *a == joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_accept_their_aspects() {
        let kept = |f: AspectFilter| -> Vec<&str> {
            ASPECTS.iter().copied().filter(|a| f.accepts(a)).collect()
        };
        assert_eq!(kept(AspectFilter::All).len(), 4);
        assert_eq!(kept(AspectFilter::Dorsal), ["dorsal left", "dorsal right"]);
        assert_eq!(kept(AspectFilter::Palmar), ["palmar left", "palmar right"]);
        assert_eq!(kept(AspectFilter::PalmarRight), ["palmar right"]);
    }

    #[test]
    fn canonicalises_aspects() {
        assert_eq!(canonical_aspect(" Dorsal  Right "), Some("dorsal right"));
        assert_eq!(canonical_aspect("dorsal"), None);
    }
}
