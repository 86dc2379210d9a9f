//! Synthetic datasets in the two layouts hands-search reads, small enough for a test to
//! train on: 24x24 PNGs, reddish for `female` and bluish for `male`, with noise, so that a
//! few epochs can tell them apart.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::images::{noisy_square, png};

/// The colour of each label's images.
const LABELS: [(&str, [u8; 3]); 2] = [("female", [180, 60, 60]), ("male", [60, 60, 180])];

/// Side of the images.
const SIDE: u32 = 24;

/// A class-folder dataset under `root` (`female/`, `male/`): `per_class` images per class,
/// each image its own subject.
pub fn class_folders(root: &Path, per_class: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (label, base) in LABELS {
        let dir = root.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let image = noisy_square(SIDE, base, &mut rng);
            std::fs::write(dir.join(format!("{i}.png")), png(&image)).unwrap();
        }
    }
}

/// An 11K Hands layout under `root` (`HandInfo.csv` + `images/`): `subjects` female and
/// `subjects` male subjects (the female ones left out when `female` is false), two dorsal
/// images each.
pub fn hands_info(root: &Path, subjects: usize, female: bool) {
    let images = root.join("images");
    std::fs::create_dir_all(&images).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut csv = String::from("id,gender,aspectOfHand,imageName\n");
    for (gender, base) in LABELS {
        if gender == "female" && !female {
            continue;
        }
        for s in 0..subjects {
            let id = format!("{gender}{s}");
            for i in 0..2 {
                let name = format!("{id}_{i}.png");
                let image = noisy_square(SIDE, base, &mut rng);
                std::fs::write(images.join(&name), png(&image)).unwrap();
                csv.push_str(&format!("{id},{gender},dorsal right,{name}\n"));
            }
        }
    }
    std::fs::write(root.join("HandInfo.csv"), csv).unwrap();
}
