//! Named choices: the small enums of this crate (aspect filters, augmentation recipes) with
//! every value, its name and a one-line description, for front ends that list or parse them.

/// A small enum whose values are chosen by name (on a command line, in JSON).
pub trait Choice: Copy + 'static {
    /// What a value is, for messages (e.g. "aspect filter").
    const WHAT: &'static str;
    /// Every value, in the order to list them.
    const ALL: &'static [Self];

    /// The value's name.
    fn name(self) -> &'static str;

    /// One line on what the value does.
    fn about(self) -> &'static str;

    /// The value named `name`, or an error that lists the names there are.
    fn parse(name: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|value| value.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|value| value.name()).collect();
                format!(
                    "unknown {} '{name}'; expected one of: {}",
                    Self::WHAT,
                    names.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;
    use crate::{AspectFilter, AugmentRecipe};

    /// Every value's name parses back to it and is its JSON spelling; an unknown name is an
    /// error that lists the names.
    fn names_round_trip<T: Choice + Serialize + PartialEq + std::fmt::Debug>() {
        for &value in T::ALL {
            assert_eq!(T::parse(value.name()), Ok(value));
            assert_eq!(
                serde_json::to_string(&value).unwrap(),
                format!("\"{}\"", value.name())
            );
            assert!(!value.about().is_empty());
        }
        let err = T::parse("no such name").unwrap_err();
        assert!(
            err.contains(T::WHAT) && err.contains("'no such name'"),
            "{err}"
        );
        for &value in T::ALL {
            assert!(err.contains(value.name()), "{err}");
        }
    }

    #[test]
    fn aspect_filters_and_recipes_round_trip_their_names() {
        names_round_trip::<AspectFilter>();
        names_round_trip::<AugmentRecipe>();
    }
}
