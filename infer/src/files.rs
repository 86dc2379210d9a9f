//! Turning the paths given on a command line into the list of images to predict.
//!
//! The walk is finite whatever the tree holds: symlinks are followed, but each real folder
//! (device and inode) is entered at most once, so a symlink loop ends, and each real file is
//! listed once, at the first path that reaches it. A folder that cannot be read is recorded
//! as an error and the walk goes on.

use std::collections::HashSet;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// File extensions taken from folders (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "jpe", "png", "bmp", "webp"];

/// The images found under the given paths.
#[derive(Debug, Default)]
pub struct Collected {
    /// Files to predict, in order: each argument in turn, folders sorted by name.
    pub files: Vec<PathBuf>,
    /// Files in the folders that were left out because their extension is not an image's.
    pub skipped: usize,
    /// Folders that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, std::io::Error)>,
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
/// its sub-folders. Symlinks are followed; a real folder is walked once and a real file
/// listed once.
pub fn collect(paths: &[PathBuf], recursive: bool) -> Collected {
    let mut walk = Walk {
        recursive,
        seen: HashSet::new(),
        out: Collected::default(),
    };
    for path in paths {
        match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => walk.folder(path, &metadata),
            Ok(metadata) => walk.file(path.clone(), Some(&metadata)),
            Err(_) => walk.file(path.clone(), None),
        }
    }
    walk.out
}

/// The identity of a file system entry: device and inode where there are such.
#[cfg(unix)]
type Identity = (u64, u64);
#[cfg(not(unix))]
type Identity = PathBuf;

#[cfg(unix)]
fn identity(_path: &Path, metadata: &Metadata) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    Some((metadata.dev(), metadata.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path, _metadata: &Metadata) -> Option<Identity> {
    std::fs::canonicalize(path).ok()
}

struct Walk {
    recursive: bool,
    /// Folders and files already taken.
    seen: HashSet<Identity>,
    out: Collected,
}

impl Walk {
    /// Takes a file unless the same file was taken before; a path without metadata (missing,
    /// a broken symlink) is taken as it is.
    fn file(&mut self, path: PathBuf, metadata: Option<&Metadata>) {
        let id = metadata.and_then(|m| identity(&path, m));
        if id.is_none_or(|id| self.seen.insert(id)) {
            self.out.files.push(path);
        }
    }

    fn folder(&mut self, dir: &Path, metadata: &Metadata) {
        if identity(dir, metadata).is_some_and(|id| !self.seen.insert(id)) {
            return; // walked already (a symlink loop or a second way in)
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => return self.out.unreadable.push((dir.to_path_buf(), e)),
        };
        let mut paths = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) if entry.file_name().as_encoded_bytes().starts_with(b".") => {}
                Ok(entry) => paths.push(entry.path()),
                Err(e) => self.out.unreadable.push((dir.to_path_buf(), e)),
            }
        }
        paths.sort();
        for path in paths {
            // Following symlinks; an entry whose target is gone is judged by its name.
            let metadata = std::fs::metadata(&path).ok();
            match metadata {
                Some(m) if m.is_dir() => {
                    if self.recursive {
                        self.folder(&path, &m);
                    }
                }
                _ if has_image_extension(&path) => self.file(path, metadata.as_ref()),
                _ => self.out.skipped += 1,
            }
        }
    }
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
        let flat = collect(&[root.to_path_buf()], false);
        assert_eq!(flat.files, [root.join("a.png"), root.join("b.JPG")]);
        assert_eq!(flat.skipped, 1);
        let deep = collect(&[root.to_path_buf(), root.join("missing.jpg")], true);
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
