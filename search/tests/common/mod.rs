//! Helpers shared by hands-search's integration tests.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A class-folder dataset of `per_class` synthetic 24x24 PNGs per class: reddish `female`,
/// bluish `male`, with noise (each image its own subject).
pub fn synthetic_dataset(root: &Path, per_class: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for (label, base) in [("female", [180u8, 60, 60]), ("male", [60u8, 60, 180])] {
        let dir = root.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..per_class {
            let image = image::RgbImage::from_fn(24, 24, |_, _| {
                image::Rgb(base.map(|c| c.saturating_add(rand::Rng::random_range(&mut rng, 0..60))))
            });
            image.save(dir.join(format!("{i}.png"))).unwrap();
        }
    }
}
