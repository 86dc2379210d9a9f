//! Predicts on image files with the library API.
//!
//! `cargo run --release -p hands-infer --example predict -- MODEL IMAGE...`

use hands_infer::{Options, Predictor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().ok_or("usage: predict MODEL IMAGE...")?;
    let images: Vec<String> = args.collect();
    let predictor = Predictor::open_with(&model, &Options::default())?;
    eprintln!(
        "{} on {} ({})",
        model,
        predictor.execution_provider(),
        predictor.ort_library().display()
    );
    for (path, result) in images.iter().zip(predictor.predict_paths(&images)?) {
        match result {
            Ok(p) => {
                let probabilities: Vec<String> = predictor
                    .labels()
                    .iter()
                    .zip(&p.probabilities)
                    .map(|(label, p)| format!("{label}={p:.4}"))
                    .collect();
                println!("{path}\t{}\t{}", p.label, probabilities.join(" "));
            }
            Err(e) => println!("{path}\terror: {e}"),
        }
    }
    Ok(())
}
