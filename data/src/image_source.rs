//! Which kind of photograph an image is, told by its shape: one of 11K Hands' originals (4:3
//! as shot, the 1600x1200 photos and their 400x300 downscales, like a user's own photos) or
//! one of the dataset's older square copies (180x180 and 100x100, squashed from 4:3). Figures
//! are reported for each, so that the accuracy on the photos users have is a number of its own.

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The kind of photograph an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageSource {
    /// Not square: a photo as shot (11K Hands' originals are 4:3).
    Original,
    /// Square: a copy resized to a square (11K Hands' older 180x180 and 100x100 copies).
    SquareCopy,
}

impl ImageSource {
    /// Every source, in report order.
    pub const ALL: [ImageSource; 2] = [ImageSource::Original, ImageSource::SquareCopy];

    /// The source of an image of `width` x `height` pixels.
    pub fn of_dimensions(width: u32, height: u32) -> ImageSource {
        if width == height {
            ImageSource::SquareCopy
        } else {
            ImageSource::Original
        }
    }

    /// The source of an image file, from its header alone (no pixel is decoded); `None` when
    /// the header cannot be read (the image cache names such a file when it decodes it).
    pub fn of_file(path: &Path) -> Option<ImageSource> {
        let (width, height) = image::ImageReader::open(path)
            .ok()?
            .with_guessed_format()
            .ok()?
            .into_dimensions()
            .ok()?;
        Some(ImageSource::of_dimensions(width, height))
    }

    /// The name figures are reported under: `originals` or `copies`.
    pub fn name(self) -> &'static str {
        match self {
            ImageSource::Original => "originals",
            ImageSource::SquareCopy => "copies",
        }
    }
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn square_images_are_copies_and_the_rest_originals() {
        assert_eq!(ImageSource::of_dimensions(400, 300), ImageSource::Original);
        assert_eq!(
            ImageSource::of_dimensions(1200, 1600),
            ImageSource::Original
        );
        assert_eq!(
            ImageSource::of_dimensions(180, 180),
            ImageSource::SquareCopy
        );
        assert_eq!(ImageSource::Original.to_string(), "originals");
        assert_eq!(ImageSource::SquareCopy.name(), "copies");
    }

    #[test]
    fn the_source_of_a_file_comes_from_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let wide = dir.path().join("wide.png");
        image::RgbImage::new(8, 6).save(&wide).unwrap();
        let square = dir.path().join("square.png");
        image::RgbImage::new(5, 5).save(&square).unwrap();
        let broken = dir.path().join("broken.jpg");
        std::fs::write(&broken, b"not an image").unwrap();
        assert_eq!(ImageSource::of_file(&wide), Some(ImageSource::Original));
        assert_eq!(ImageSource::of_file(&square), Some(ImageSource::SquareCopy));
        assert_eq!(ImageSource::of_file(&broken), None);
        assert_eq!(ImageSource::of_file(&dir.path().join("absent.png")), None);
    }
}
