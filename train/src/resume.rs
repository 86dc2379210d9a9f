//! Resuming a run: its checkpoint read back, and the settings stored in it against those of
//! the invocation. A resumed run continues with the stored settings; a setting given
//! differently is refused (listing each one) unless the subcommand applies it explicitly.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::checkpoint;
use hands_reports::run_dir::RunDir;

/// The tensors and the state (as `S`) of `run`'s checkpoint, to resume from; `kind` names
/// the run in errors (`training`, `search`).
pub fn stored_state<S: DeserializeOwned>(
    run: &RunDir,
    device: &Device,
    kind: &str,
) -> Result<(HashMap<String, Tensor>, S)> {
    let path = run.checkpoint();
    let (tensors, state) = checkpoint::load(&path, device)
        .with_context(|| format!("cannot resume from {}", path.display()))?;
    let state = serde_json::from_value(state)
        .with_context(|| format!("{}: not a {kind} checkpoint", path.display()))?;
    Ok((tensors, state))
}

/// Refuses to start a new run in a folder that holds a checkpoint (of a `kind` run).
pub fn refuse_existing_checkpoint(run: &RunDir, kind: &str) -> Result<()> {
    if run.checkpoint().exists() {
        bail!(
            "{} already holds a {kind} checkpoint: pass --resume to continue it, or choose \
             another --out",
            run.path().display()
        );
    }
    Ok(())
}

/// A setting whose invocation value differs from the stored one.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// The setting's field name (`init_channels`; the flag is `--init-channels`).
    pub name: String,
    /// The value the run was started with.
    pub stored: Value,
    /// The value of this invocation.
    pub given: Value,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--{}: stored {}, given {}",
            self.name.replace('_', "-"),
            self.stored,
            self.given
        )
    }
}

/// The settings of `given` that differ from `stored`, leaving out the names in `ignore`
/// (per-invocation settings) and, when `explicit` lists the settings given on the command
/// line, every setting not among them (a default is not a request). Path settings (`data`,
/// `split_file`) that name the same file are equal.
pub fn changed_settings(
    stored: &impl Serialize,
    given: &impl Serialize,
    explicit: Option<&[String]>,
    ignore: &[&str],
) -> Result<Vec<Change>> {
    let (Value::Object(stored), Value::Object(given)) =
        (serde_json::to_value(stored)?, serde_json::to_value(given)?)
    else {
        anyhow::bail!("settings are not a JSON object");
    };
    let mut changes = Vec::new();
    for (name, given_value) in &given {
        if ignore.contains(&name.as_str())
            || explicit.is_some_and(|names| !names.iter().any(|n| n == name))
        {
            continue;
        }
        let stored_value = stored.get(name).cloned().unwrap_or(Value::Null);
        if stored_value != *given_value && !same_path(&stored_value, given_value) {
            changes.push(Change {
                name: name.clone(),
                stored: stored_value,
                given: given_value.clone(),
            });
        }
    }
    Ok(changes)
}

/// Whether two JSON strings name the same existing file or folder.
fn same_path(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_str(), b.as_str()) else {
        return false;
    };
    match (
        std::fs::canonicalize(Path::new(a)),
        std::fs::canonicalize(Path::new(b)),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The settings of a training (or cross-validation) that each invocation gives anew: never
/// compared with the stored ones on resume.
pub const PER_INVOCATION: [&str; 5] = [
    "resume",
    "out",
    "device",
    "extend_epochs",
    "allow_unfinished",
];

/// The epoch counts of a resumed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epochs {
    /// The count the run was started with.
    pub stored: usize,
    /// The count of this invocation.
    pub given: usize,
    /// Epochs already run (of the current stage, for a staged search).
    pub done: usize,
}

/// The epoch count a resumed run goes on to: the stored one, or with `extend`
/// (`--extend-epochs`) the given one, which may not be below the epochs already run
/// (`where_done` places them, e.g. " in stage 1"; `unit` names the count, e.g. "epochs per
/// stage"). Any setting in `changes` other than an extended `--epochs` refuses the resume.
pub fn resumed_epochs(
    run: &Path,
    mut changes: Vec<Change>,
    extend: bool,
    epochs: Epochs,
    (where_done, unit): (&str, &str),
) -> Result<usize> {
    let mut resumed = epochs.stored;
    if extend {
        if epochs.given < epochs.done {
            anyhow::bail!(
                "--epochs {} is fewer than the {} epochs already run{where_done}",
                epochs.given,
                epochs.done
            );
        }
        if epochs.given != epochs.stored {
            eprintln!(
                "--extend-epochs: running to {} {unit} (the run had {})",
                epochs.given, epochs.stored
            );
            resumed = epochs.given;
        }
        changes.retain(|c| c.name != "epochs");
    }
    if !changes.is_empty() {
        return Err(refusal(
            run,
            &changes,
            "resume with the run's settings (or add --extend-epochs to change --epochs), or \
             start a new run in another --out",
        ));
    }
    Ok(resumed)
}

/// The error of a resume refused for `changes` (not empty), `hint` saying what can apply
/// which of them.
pub fn refusal(run: &Path, changes: &[Change], hint: &str) -> anyhow::Error {
    let list: Vec<String> = changes.iter().map(|c| format!("  {c}")).collect();
    anyhow::anyhow!(
        "cannot resume {}: settings differ from the run's config.json:\n{}\n{hint}",
        run.display(),
        list.join("\n")
    )
}
