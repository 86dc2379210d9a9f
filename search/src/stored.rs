//! `--resume --out DIR` on its own: a run folder's `config.json` holds every setting of the
//! run, so the flags a subcommand requires (`--data`, `--genotype`) may be left out when
//! resuming; they are read back from the stored settings and added to the command line
//! before it is parsed, where the resumed run compares them with the stored ones as usual.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Command;
use serde_json::Value;

use hands_reports::run_dir::RunDir;

/// `argv` with the required flags it leaves out under `--resume` added from the stored
/// settings of the run in `--out`. A command line that does not resume, lacks nothing, or
/// does not parse even with those flags optional is returned as it is (clap then reports
/// it); a resume that leaves a required flag out without `--out`, or whose run folder holds
/// no readable `config.json` with that setting, is refused naming what is missing.
pub fn complete_resume(command: &Command, argv: Vec<OsString>) -> Result<Vec<OsString>> {
    let relaxed = command.clone().mut_subcommands(|sub| {
        required_ids(&sub)
            .into_iter()
            .fold(sub, |sub, id| sub.mut_arg(id, |arg| arg.required(false)))
    });
    let Ok(matches) = relaxed.try_get_matches_from(&argv) else {
        return Ok(argv);
    };
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(argv);
    };
    let resumes = sub
        .try_get_one::<bool>("resume")
        .ok()
        .flatten()
        .copied()
        .unwrap_or(false);
    if !resumes {
        return Ok(argv);
    }
    let subcommand = command
        .find_subcommand(name)
        .expect("the relaxed command has the same subcommands");
    let missing: Vec<String> = required_ids(subcommand)
        .into_iter()
        .filter(|id| !sub.contains_id(id))
        .collect();
    if missing.is_empty() {
        return Ok(argv);
    }
    let flags = missing
        .iter()
        .map(|id| format!("--{id}"))
        .collect::<Vec<_>>();
    let Some(out) = sub.get_one::<PathBuf>("out") else {
        bail!(
            "hands-search {name} --resume without {} needs --out DIR, the run folder whose \
             stored settings give them",
            flags.join(" and ")
        );
    };
    let run = RunDir::new(out);
    let stored = stored_settings(&run)?;
    let mut completed = argv;
    for (id, flag) in missing.iter().zip(&flags) {
        let value = match stored.get(id) {
            Some(Value::String(text)) => text.clone(),
            Some(value) if !value.is_null() => value.to_string(),
            _ => bail!(
                "{}: holds no `{id}` setting to resume with; give {flag}",
                run.config().display()
            ),
        };
        completed.push(flag.into());
        completed.push(value.into());
    }
    Ok(completed)
}

/// The ids of the arguments `command` requires.
fn required_ids(command: &Command) -> Vec<String> {
    command
        .get_arguments()
        .filter(|arg| arg.is_required_set())
        .map(|arg| arg.get_id().to_string())
        .collect()
}

/// The settings stored in `run` (its `config.json`, a JSON object).
fn stored_settings(run: &RunDir) -> Result<serde_json::Map<String, Value>> {
    let path = run.config();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot resume {}: cannot read {} (is it the run folder?)",
            run.path().display(),
            path.display()
        )
    })?;
    match serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?
    {
        Value::Object(settings) => Ok(settings),
        _ => bail!("{}: not a JSON object of settings", path.display()),
    }
}
