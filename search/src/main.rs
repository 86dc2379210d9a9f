//! `hands-search`: architecture search, training and evaluation on hand photographs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Subcommand};

use hands_nas::args::SearchArgs;
use hands_nas::cost::{run_cost, CostArgs};
use hands_nas::search::run_search;
use hands_reports::plot::plot_run;
use hands_train::args::cv::CvArgs;
use hands_train::args::train::TrainArgs;
use hands_train::calibrate::{run_calibrate, CalibrateArgs};
use hands_train::compare::{run_compare, CompareArgs};
use hands_train::cv::run_cv;
use hands_train::ensemble::{run_ensemble, EnsembleArgs};
use hands_train::eval::{run_eval, EvalArgs};
use hands_train::train::run_train;

mod stored;

use stored::complete_resume;

/// Differentiable architecture search for hand-gender networks.
#[derive(Debug, clap::Parser)]
#[command(name = "hands-search", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// CPU threads for the kernels, matrix products and image decoding, 1 to 1024 (default:
    /// all cores).
    #[arg(long, global = true, value_parser = hands_train::flags::usize_in(1..=1024))]
    threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Search a cell architecture (DARTS, DARTS second order, PC-DARTS, P-DARTS).
    Search(SearchArgs),
    /// Train the network of a genotype from scratch; writes model.safetensors with its card.
    Train(TrainArgs),
    /// Measure a trained model on the test subjects of its run (or on any data).
    Eval(EvalArgs),
    /// Cross-validate by subject: train each genotype from scratch on K folds, measure it on
    /// the subjects it never saw, beside the majority class; writes cv.json and cv.md.
    Cv(CvArgs),
    /// Would averaging several networks help? Measures the mean of the probabilities of
    /// cross-validation runs on the same folds, from their kept test predictions.
    Ensemble(EnsembleArgs),
    /// Is one recipe better than another? Pairs two cross-validation runs on the same folds
    /// fold by fold (those both finished): the differences, their mean ± std, the wins.
    Compare(CompareArgs),
    /// How far can its probabilities be trusted? Fits the temperature of a recipe's
    /// probabilities on its cross-validation's out-of-fold predictions (ECE before and after,
    /// a reliability diagram) and writes a model file of the recipe calibrated.
    Calibrate(CalibrateArgs),
    /// What the network of a genotype costs for one image: parameters, multiply-adds, peak
    /// activation memory, and its ONNX Runtime CPU latency measured here.
    Cost(CostArgs),
    /// Plot a run's logs: alphas.svg, alphas_edges.svg, search_curves.svg, train_curves.svg.
    Plot(PlotArgs),
}

/// The ids of the arguments given on the command line (not defaulted) of the subcommand.
fn explicit_settings(matches: &ArgMatches) -> Option<Vec<String>> {
    let (_, sub) = matches.subcommand()?;
    Some(
        sub.ids()
            .filter(|id| sub.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.to_string())
            .collect(),
    )
}

/// Runs the subcommand; errors are one line on stderr (the cause chain joined by `: `)
/// and exit status 1.
fn main() -> ExitCode {
    hands_models::logging::init("warn");
    if let Err(e) = hands_models::interrupt::exit_on_signals(
        "hands-search",
        "files written before are kept; a run goes on from its last checkpoint with --resume",
    ) {
        eprintln!("hands-search: error: cannot handle signals: {e}");
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hands-search: error: {e:#}");
            if std::env::var("HANDS_LOG").is_ok_and(|level| level == "debug") {
                eprintln!("{e:?}"); // the cause chain, and the backtrace when one was captured
            }
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let command = Cli::command();
    let argv = complete_resume(&command, std::env::args_os().collect())?;
    let matches = command.get_matches_from(argv);
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let explicit = explicit_settings(&matches);
    match &mut cli.command {
        Command::Search(args) => {
            args.run.explicit = explicit;
            args.apply_paper_defaults();
        }
        Command::Train(args) => args.run.explicit = explicit,
        Command::Cv(args) => args.train.run.explicit = explicit,
        Command::Eval(_)
        | Command::Ensemble(_)
        | Command::Compare(_)
        | Command::Calibrate(_)
        | Command::Plot(_)
        | Command::Cost(_) => {}
    }
    hands_nas::memory::keep_freed_tensor_memory();
    let threads = cli.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    hands_train::device::set_cpu_threads(threads)?;
    match &cli.command {
        Command::Search(args) => run_search(args),
        Command::Train(args) => run_train(args),
        Command::Eval(args) => run_eval(args),
        Command::Cv(args) => run_cv(args),
        Command::Ensemble(args) => run_ensemble(args),
        Command::Compare(args) => run_compare(args),
        Command::Calibrate(args) => run_calibrate(args),
        Command::Plot(args) => run_plot(args),
        Command::Cost(args) => run_cost(args),
    }
}

/// Arguments of `hands-search plot`.
#[derive(Debug, Clone, clap::Args)]
struct PlotArgs {
    /// Run folder holding `search.jsonl` and/or `train.jsonl`.
    #[arg(long)]
    run: PathBuf,
    /// Folder for the SVG files (default: the run folder).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `hands-search plot`: writes the plots and prints their paths.
fn run_plot(args: &PlotArgs) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| args.run.clone());
    for path in plot_run(&args.run, &out)? {
        println!("{}", path.display());
    }
    Ok(())
}
