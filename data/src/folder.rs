//! A folder with one sub-folder of images per class (torchvision's `ImageFolder` layout).

use std::path::{Path, PathBuf};

use super::{Dataset, Error, ImageSource, Sample, Source};

/// File extensions (lower case) read as images.
pub const IMAGE_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "webp"];

/// Whether `path` has one of the [`IMAGE_EXTENSIONS`] (any case).
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// The entries of `dir`, sorted by path, hidden ones left out.
fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if !is_hidden(&path) {
            entries.push(path);
        }
    }
    entries.sort();
    Ok(entries)
}

/// Collects the image files under `dir` (recursively, sorted); any other visible file is an
/// error so that nothing is skipped silently.
fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    for path in sorted_entries(dir)? {
        if path.is_dir() {
            collect_images(&path, out)?;
        } else if is_image_path(&path) {
            out.push(path);
        } else {
            return Err(Error::NotAnImage {
                path,
                extensions: IMAGE_EXTENSIONS.join(", "),
            });
        }
    }
    Ok(())
}

pub(crate) fn load(root: &Path) -> Result<Dataset, Error> {
    let class_dirs: Vec<PathBuf> = sorted_entries(root)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect();
    if class_dirs.is_empty() {
        return Err(Error::NotADataset {
            path: root.to_path_buf(),
        });
    }
    let mut labels = Vec::with_capacity(class_dirs.len());
    let mut samples = Vec::new();
    for (label, dir) in class_dirs.iter().enumerate() {
        let name =
            dir.file_name()
                .and_then(|n| n.to_str())
                .ok_or_else(|| Error::InvalidSamples {
                    path: dir.clone(),
                    reason: "class folder name is not valid UTF-8".into(),
                })?;
        labels.push(name.to_string());
        let mut images = Vec::new();
        collect_images(dir, &mut images)?;
        if images.is_empty() {
            return Err(Error::EmptyClass { path: dir.clone() });
        }
        for path in images {
            // Each image is its own subject: the path below the root is unique.
            let subject = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            samples.push(Sample {
                image_source: ImageSource::of_file(&path),
                path,
                subject,
                label,
                aspect: None,
            });
        }
    }
    Dataset::from_samples(
        Source::Folder {
            root: root.to_path_buf(),
        },
        labels,
        samples,
    )
}
