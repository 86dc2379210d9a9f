//! Turning the paths given on a command line into the list of images to predict.

use std::path::{Path, PathBuf};

/// File extensions taken from folders (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "jpe", "png", "bmp", "webp"];

/// The images found under the given paths.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Files to predict, in order: each argument in turn, folders sorted by name.
    pub files: Vec<PathBuf>,
    /// Files in the folders that were left out because their extension is not an image's.
    pub skipped: usize,
}

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Collects images: a file argument is always taken (if it is not an image, its row says
/// so), a missing path is kept too so that it gets an error row; a folder contributes its
/// files with an image extension (hidden entries excluded) and, with `recursive`, those of
/// its sub-folders.
pub fn collect(paths: &[PathBuf], recursive: bool) -> std::io::Result<Collected> {
    let mut out = Collected::default();
    for path in paths {
        if path.is_dir() {
            walk(path, recursive, &mut out)?;
        } else {
            out.files.push(path.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, recursive: bool, out: &mut Collected) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                walk(&entry, recursive, out)?;
            }
        } else if has_image_extension(&entry) {
            out.files.push(entry);
        } else {
            out.skipped += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_give_sorted_images_and_recursion_is_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        for name in ["b.JPG", "a.png", "notes.txt", ".hidden.jpg", "sub/c.webp"] {
            std::fs::write(root.join(name), b"x").unwrap();
        }
        let flat = collect(&[root.to_path_buf()], false).unwrap();
        assert_eq!(flat.files, [root.join("a.png"), root.join("b.JPG")]);
        assert_eq!(flat.skipped, 1);
        let deep = collect(&[root.to_path_buf(), root.join("missing.jpg")], true).unwrap();
        assert_eq!(
            deep.files,
            [
                root.join("a.png"),
                root.join("b.JPG"),
                root.join("sub/c.webp"),
                root.join("missing.jpg")
            ]
        );
    }
}
