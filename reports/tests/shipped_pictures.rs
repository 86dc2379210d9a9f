//! The shipped model's cell drawings are what `dot` draws from its genotype today.

use std::path::Path;

use hands_models::Genotype;
use hands_reports::dot::{cell_dot, cell_svg};

#[test]
fn the_shipped_cell_pictures_are_drawn_from_the_shipped_genotype() {
    let pretrained = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/pretrained");
    let genotype = Genotype::read(&pretrained.join("genotype.json")).unwrap();
    for (reduction, dot, svg) in [
        (false, "normal.dot", "normal.svg"),
        (true, "reduce.dot", "reduce.svg"),
    ] {
        let read = |name: &str| std::fs::read_to_string(pretrained.join(name)).unwrap();
        assert_eq!(cell_dot(&genotype, reduction), read(dot), "{dot}");
        assert_eq!(cell_svg(&genotype, reduction), read(svg), "{svg}");
    }
}
