//! Why the network decided: occlusion sensitivity (Zeiler and Fergus, "Visualizing and
//! Understanding Convolutional Networks", 2014).
//!
//! Square regions of the network's input are masked in turn with the training mean colour
//! (0 after normalisation) and the drop in the probability of the predicted label is
//! recorded; a pixel's value is the mean drop over the masks that cover it. Only forward
//! passes are needed, so it runs wherever the model runs (ONNX Runtime on CPU or CUDA).
//! A positive value marks a region the answer relies on; a negative one, a region that
//! argued against it.

use image::{Rgb, RgbImage};

use crate::predictor::{Input, Prediction, Predictor};
use crate::Error;

/// How the input is masked: squares of `patch` pixels, moved by `stride` pixels (the last
/// row and column of masks are moved to the input's edge, so every pixel is covered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occlusion {
    /// Side of a masked square, in input pixels.
    pub patch: u32,
    /// Step between masks, in input pixels.
    pub stride: u32,
}

impl Occlusion {
    /// Masks of a quarter of the input's side, moved by an eighth: 7 x 7 = 49 forward
    /// passes per image at any input size that is a multiple of 8.
    pub fn for_input(size: u32) -> Occlusion {
        Occlusion {
            patch: (size / 4).max(1),
            stride: (size / 8).max(1),
        }
    }

    /// The top-left offsets of the masks along one side of `size` pixels.
    fn offsets(&self, size: u32) -> Vec<u32> {
        let patch = self.patch.min(size);
        let last = size - patch;
        let mut offsets: Vec<u32> = (0..=last).step_by(self.stride.max(1) as usize).collect();
        if offsets.last() != Some(&last) {
            offsets.push(last);
        }
        offsets
    }
}

/// The occlusion map of one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The prediction on the unmasked image.
    pub prediction: Prediction,
    /// Side of the square map: the network's input size.
    pub size: u32,
    /// `size * size` values, row by row: the mean drop of the predicted label's probability
    /// when a region holding the pixel is masked.
    pub map: Vec<f32>,
}

impl Predictor {
    /// The occlusion map of a preprocessed image, with [`Occlusion::for_input`] masks.
    pub fn explain(&self, input: &Input) -> Result<Explanation, Error> {
        self.explain_with(input, Occlusion::for_input(self.input_size()))
    }

    /// The occlusion map of a preprocessed image with the given masks; the masked copies
    /// run through the network in batches of at most [`Predictor::max_batch`].
    pub fn explain_with(&self, input: &Input, occlusion: Occlusion) -> Result<Explanation, Error> {
        if occlusion.patch == 0 || occlusion.stride == 0 {
            return Err(Error::Usage(format!(
                "occlusion masks need a positive patch and stride, got {occlusion:?}"
            )));
        }
        let prediction = self.predict_inputs(&[input])?.remove(0);
        let size = self.input_size();
        let side = size as usize;
        let patch = occlusion.patch.min(size) as usize;
        let offsets = occlusion.offsets(size);
        let masks: Vec<(usize, usize)> = offsets
            .iter()
            .flat_map(|&y| offsets.iter().map(move |&x| (x as usize, y as usize)))
            .collect();
        let mut drop_sum = vec![0f32; side * side];
        let mut covered = vec![0u32; side * side];
        let base = prediction.probabilities[prediction.index];
        for group in masks.chunks(self.max_batch()) {
            let masked: Vec<Input> = group
                .iter()
                .map(|&(x, y)| input.masked(side, x, y, patch))
                .collect();
            let results = self.predict_inputs(&masked.iter().collect::<Vec<_>>())?;
            for (&(x, y), result) in group.iter().zip(results) {
                let drop = base - result.probabilities[prediction.index];
                for row in y..y + patch {
                    for column in x..x + patch {
                        drop_sum[row * side + column] += drop;
                        covered[row * side + column] += 1;
                    }
                }
            }
        }
        let map = drop_sum
            .iter()
            .zip(&covered)
            .map(|(&sum, &n)| sum / n.max(1) as f32)
            .collect();
        Ok(Explanation {
            prediction,
            size,
            map,
        })
    }
}

/// Paints `explanation` over `photo` (any size; the map is stretched to it as the
/// preprocessing stretched the photo to the input, with bilinear interpolation): red where
/// masking lowered the predicted label's probability, blue where it raised it, more opaque
/// the larger the change relative to the largest one in the map.
pub fn overlay(photo: &RgbImage, explanation: &Explanation) -> RgbImage {
    let peak = explanation
        .map
        .iter()
        .fold(0f32, |peak, v| peak.max(v.abs()));
    let (width, height) = photo.dimensions();
    let side = explanation.size as usize;
    let sample = |x: f32, y: f32| -> f32 {
        let x = x.clamp(0.0, (side - 1) as f32);
        let y = y.clamp(0.0, (side - 1) as f32);
        let (x0, y0) = (x.floor() as usize, y.floor() as usize);
        let (x1, y1) = ((x0 + 1).min(side - 1), (y0 + 1).min(side - 1));
        let (fx, fy) = (x - x0 as f32, y - y0 as f32);
        let at = |x: usize, y: usize| explanation.map[y * side + x];
        let top = at(x0, y0) * (1.0 - fx) + at(x1, y0) * fx;
        let bottom = at(x0, y1) * (1.0 - fx) + at(x1, y1) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    let scale_x = side as f32 / width as f32;
    let scale_y = side as f32 / height as f32;
    RgbImage::from_fn(width, height, |x, y| {
        let pixel = photo.get_pixel(x, y);
        if peak <= 0.0 {
            return *pixel;
        }
        let value = sample(
            (x as f32 + 0.5) * scale_x - 0.5,
            (y as f32 + 0.5) * scale_y - 0.5,
        ) / peak;
        let tint = if value >= 0.0 {
            [255.0, 0.0, 0.0]
        } else {
            [0.0, 64.0, 255.0]
        };
        let alpha = 0.65 * value.abs().min(1.0);
        Rgb(std::array::from_fn(|c| {
            (pixel[c] as f32 * (1.0 - alpha) + tint[c] * alpha).round() as u8
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_cover_every_pixel_and_end_at_the_edge() {
        let o = Occlusion::for_input(32);
        assert_eq!(
            o,
            Occlusion {
                patch: 8,
                stride: 4
            }
        );
        assert_eq!(o.offsets(32), [0, 4, 8, 12, 16, 20, 24]);
        let odd = Occlusion {
            patch: 5,
            stride: 4,
        };
        assert_eq!(odd.offsets(12), [0, 4, 7]);
        assert_eq!(Occlusion::for_input(3).offsets(3), [0, 1, 2]);
        let whole = Occlusion {
            patch: 40,
            stride: 8,
        };
        assert_eq!(whole.offsets(32), [0]);
    }

    fn explanation(map: Vec<f32>, size: u32) -> Explanation {
        Explanation {
            prediction: Prediction {
                label: "female".into(),
                index: 0,
                confident: true,
                probabilities: vec![0.7, 0.3],
                timing: Default::default(),
            },
            size,
            map,
        }
    }

    #[test]
    fn the_overlay_tints_where_the_answer_depends_and_keeps_the_photo_size() {
        let photo = RgbImage::from_pixel(40, 30, Rgb([100, 100, 100]));
        // Left half of a 2x2 map matters (positive), right half argued against (negative).
        let painted = overlay(&photo, &explanation(vec![0.2, -0.2, 0.2, -0.2], 2));
        assert_eq!(painted.dimensions(), (40, 30));
        let left = painted.get_pixel(0, 15);
        let right = painted.get_pixel(39, 15);
        assert!(left[0] > 150 && left[2] < 60, "{left:?}");
        assert!(right[2] > 150 && right[0] < 60, "{right:?}");
        // A flat map changes nothing.
        assert_eq!(overlay(&photo, &explanation(vec![0.0; 4], 2)), photo);
    }
}
