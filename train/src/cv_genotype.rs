//! A genotype folder of a `hands-search cv` run (`RUN/GENOTYPE`, holding fold-0/, fold-1/,
//! ...), as `ensemble` and `compare` read it: its run's settings and folds, and each fold's
//! kept figures.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::args::cv::CvArgs;
use crate::cv_report::FoldResult;
use hands_data::{Dataset, Folds, Split};
use hands_reports::run_dir::{RunDir, FOLDS};

/// One genotype folder of a cross-validation run.
pub(crate) struct CvGenotype {
    /// The folder as given.
    dir: PathBuf,
    /// The cross-validation run it belongs to (its parent).
    pub(crate) run: RunDir,
    /// That run's settings.
    pub(crate) config: CvArgs,
}

impl CvGenotype {
    /// Opens `dir`, refused unless its parent holds a cross-validation `config.json`.
    pub(crate) fn open(dir: &Path) -> Result<CvGenotype> {
        let run = RunDir::new(match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        });
        let path = run.config();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: cannot read {} (give a genotype folder of a `hands-search cv` run, the \
                 one holding fold-0/, fold-1/, ...)",
                dir.display(),
                path.display()
            )
        })?;
        let config = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a cross-validation config", path.display()))?;
        Ok(CvGenotype {
            dir: dir.to_path_buf(),
            run,
            config,
        })
    }

    /// The folder as given.
    pub(crate) fn name(&self) -> String {
        self.dir.display().to_string()
    }

    /// The training run folder of `fold`.
    pub(crate) fn fold(&self, fold: usize) -> RunDir {
        RunDir::new(&self.dir).fold_run(fold)
    }

    /// The data its run measured and that run's folds of it.
    pub(crate) fn load_folds(&self) -> Result<(Dataset, Folds)> {
        let data = &self.config.train.data;
        let dataset = Dataset::load(&data.path, &data.aspect)?;
        let folds = Folds::load(&self.run.file(FOLDS), &dataset)?;
        Ok((dataset, folds))
    }

    /// Refuses a folder whose run measured other data or other folds than `first`'s
    /// (`folds` of `dataset`, as [`CvGenotype::load_folds`] gave them); `purpose` says what
    /// needs the same test images.
    pub(crate) fn check_same_folds(
        &self,
        first: &CvGenotype,
        folds: &Folds,
        dataset: &Dataset,
        purpose: &str,
    ) -> Result<()> {
        let (mine, theirs) = (&self.config.train.data, &first.config.train.data);
        if mine.path != theirs.path || mine.aspect != theirs.aspect {
            bail!(
                "{}: its run measured --data {} --aspect {}, {} --data {} --aspect {}: {purpose} \
                 needs the same test images",
                self.dir.display(),
                mine.path.display(),
                mine.aspect,
                first.dir.display(),
                theirs.path.display(),
                theirs.aspect
            );
        }
        let path = self.run.file(FOLDS);
        if Folds::load(&path, dataset)? != *folds {
            bail!(
                "{}: other folds than {}'s (its {} differs): {purpose} needs the same test \
                 subjects in every fold",
                self.dir.display(),
                first.dir.display(),
                path.display()
            );
        }
        Ok(())
    }

    /// The figures `fold` kept (`fold.json`; with per-source figures measured from its kept
    /// predictions where it has none, see [`FoldResult::with_sources`]), or `None` while it
    /// is not finished. `dataset`: the run's data.
    pub(crate) fn finished_fold(
        &self,
        fold: usize,
        dataset: &Dataset,
    ) -> Result<Option<FoldResult>> {
        let fold_run = self.fold(fold);
        let Some(result) = FoldResult::read(&fold_run)? else {
            return Ok(None);
        };
        let path = self.run.fold_split(fold);
        let split = Split::load(&path)?;
        split.check(dataset, &path)?;
        let test = split.test.indices(dataset);
        Ok(Some(result.with_sources(dataset, &test, &fold_run)?))
    }

    /// Each of the `folds` folds' figures as the run measured them (see
    /// [`CvGenotype::finished_fold`]); refused while one is not finished.
    pub(crate) fn fold_results(&self, folds: usize, dataset: &Dataset) -> Result<Vec<FoldResult>> {
        (0..folds)
            .map(|fold| {
                self.finished_fold(fold, dataset)?.with_context(|| {
                    format!(
                        "{}: fold {fold} is not finished (no fold.json): finish it with \
                         `hands-search cv --resume --out {}`",
                        self.dir.display(),
                        self.run.path().display()
                    )
                })
            })
            .collect()
    }
}
