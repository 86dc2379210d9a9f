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

/// [`class_folders`] whose odd-numbered images are 4:3 photos (32x24, of the same colours)
/// instead of squares: a dataset of both image sources, originals and square copies.
pub fn class_folders_of_two_sources(root: &Path, per_class: usize) {
    class_folders(root, per_class);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    for (label, base) in LABELS {
        for i in (1..per_class).step_by(2) {
            let square = noisy_square(SIDE * 4 / 3, base, &mut rng);
            let photo = image::imageops::crop_imm(&square, 0, 0, SIDE * 4 / 3, SIDE).to_image();
            std::fs::write(root.join(label).join(format!("{i}.png")), png(&photo)).unwrap();
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
