//! Writing outputs safely: an output never lands on one of the run's inputs, and a file
//! appears whole or not at all.
//!
//! Every program of the workspace writes through this module: [`ensure_not_input`] before a
//! run starts (file identity, so a symlink or a `./x/../x` spelling is caught too), then
//! [`write_atomic`] for a file written at once or [`OutputFile`] for one written as a stream.
//! Both write a temporary file beside the target and rename it over the target only when
//! everything was written, so a failed or killed run leaves the earlier file untouched. The
//! replaced file keeps its nature: a symlink is written through to the file it names, and
//! an existing file's mode (and owner, where allowed) carry over to its replacement. The
//! temporary file is removed if the program is interrupted (see [`crate::interrupt`]).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::interrupt::RemoveOnInterrupt;
use crate::Error;

/// Refuses `output` when it is the same file or folder as one of `inputs` (compared by
/// device and inode, following symlinks; paths that do not exist yet match nothing). Nothing
/// is opened, so a FIFO among the paths cannot block the check.
pub fn ensure_not_input<P: AsRef<Path>>(output: &Path, inputs: &[P]) -> Result<(), Error> {
    if identity(output).is_none() {
        return Ok(()); // does not exist (yet): it cannot be an existing input
    }
    InputSet::new(inputs).ensure_not_input(output)
}

/// The identities of a run's inputs, taken once, for a run that checks many outputs (one
/// per input, say) against all of them, as [`ensure_not_input`] checks one.
#[derive(Debug, Clone, Default)]
pub struct InputSet {
    inputs: std::collections::HashMap<Identity, PathBuf>,
}

impl InputSet {
    /// The identities of `inputs` that exist now.
    pub fn new<P: AsRef<Path>>(inputs: &[P]) -> InputSet {
        let inputs = inputs
            .iter()
            .filter_map(|p| identity(p.as_ref()).map(|id| (id, p.as_ref().to_path_buf())))
            .collect();
        InputSet { inputs }
    }

    /// Refuses `output` when it is the same file or folder as one of the inputs.
    pub fn ensure_not_input(&self, output: &Path) -> Result<(), Error> {
        let Some(id) = identity(output) else {
            return Ok(()); // does not exist (yet): it cannot be an existing input
        };
        match self.inputs.get(&id) {
            Some(input) => Err(Error::OutputIsInput {
                output: output.to_path_buf(),
                input: input.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// What tells two paths of the same file apart from two files.
#[cfg(unix)]
type Identity = (u64, u64);
#[cfg(not(unix))]
type Identity = PathBuf;

/// A file's identity: its device and inode, read from its metadata (symlinks followed).
#[cfg(unix)]
fn identity(path: &Path) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A file's identity: its canonical path where inodes are not exposed.
#[cfg(not(unix))]
fn identity(path: &Path) -> Option<Identity> {
    path.canonicalize().ok()
}

/// Writes `bytes` to `path` atomically (see [`OutputFile`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let mut file = OutputFile::create(path)?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.commit()
}

/// An output file written as a stream and committed at the end.
///
/// A regular file (or a new path) is written to a hidden temporary file in the folder of
/// the file it names (through its symlinks), synced and renamed over that file by
/// [`OutputFile::commit`]; dropped without a commit, the temporary file is deleted and the
/// file keeps what it held. A path that exists and is not a regular file (`/dev/stdout`, a
/// pipe) is written directly: there is nothing to replace.
#[derive(Debug)]
pub struct OutputFile {
    path: PathBuf,
    target: Target,
}

#[derive(Debug)]
enum Target {
    Temporary {
        writer: BufWriter<tempfile::NamedTempFile>,
        /// The file renamed over: `path`, or the file its symlinks lead to.
        real: PathBuf,
        _registered: RemoveOnInterrupt,
    },
    Direct(BufWriter<File>),
}

impl OutputFile {
    /// Opens an output at `path`; its folder must exist.
    pub fn create(path: &Path) -> Result<OutputFile, Error> {
        let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir());
        let target = if special {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            Target::Direct(BufWriter::new(file))
        } else {
            let real = follow_symlinks(path)?;
            let temporary = temporary_beside(&real)?;
            let registered = RemoveOnInterrupt::new(temporary.path());
            Target::Temporary {
                writer: BufWriter::new(temporary),
                real,
                _registered: registered,
            }
        };
        Ok(OutputFile {
            path: path.to_path_buf(),
            target,
        })
    }

    /// The path the output will have once committed.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes, syncs and renames the temporary file over the target.
    pub fn commit(self) -> Result<(), Error> {
        let path = self.path;
        match self.target {
            Target::Direct(mut writer) => writer.flush().map_err(|e| Error::io(&path, e)),
            Target::Temporary {
                writer,
                real,
                _registered,
            } => {
                let tmp = writer
                    .into_inner()
                    .map_err(|e| Error::io(&path, e.into_error()))?;
                tmp.as_file().sync_all().map_err(|e| Error::io(&path, e))?;
                tmp.persist(&real).map_err(|e| Error::io(&path, e.error))?;
                sync_parent(&real);
                Ok(())
            }
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.target {
            Target::Temporary { writer, .. } => writer.write(buf),
            Target::Direct(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.target {
            Target::Temporary { writer, .. } => writer.flush(),
            Target::Direct(w) => w.flush(),
        }
    }
}

/// How many symlinks a path may go through before it is refused, as Linux's `ELOOP`.
const MAX_SYMLINKS: usize = 40;

/// The path a write to `path` lands on: `path` itself, or the file its symlinks lead to
/// (which need not exist yet).
fn follow_symlinks(path: &Path) -> Result<PathBuf, Error> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = std::fs::read_link(&current).map_err(|e| Error::io(&current, e))?;
                current = match current.parent() {
                    Some(parent) => parent.join(target),
                    None => target,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(Error::io(
        path,
        io::Error::other(format!("more than {MAX_SYMLINKS} symlinks to follow")),
    ))
}

/// A hidden temporary file in `path`'s folder (`.NAME.XXXXXX.tmp`) with the mode (and,
/// where allowed, the owner) of the file at `path`, or mode 0644 like an ordinary output
/// (rather than tempfile's private 0600) when there is none.
fn temporary_beside(path: &Path) -> Result<tempfile::NamedTempFile, Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if path.is_dir() {
        return Err(Error::io(
            path,
            io::Error::new(io::ErrorKind::IsADirectory, "is a folder, not a file"),
        ));
    }
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    let existing = std::fs::metadata(path).ok().filter(|m| m.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = existing
            .as_ref()
            .map_or(0o644, |m| m.permissions().mode() & 0o7777);
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    let temporary = builder.tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    #[cfg(unix)]
    if let Some(meta) = &existing {
        use std::os::unix::fs::MetadataExt;
        // Only root (or the owner, for the group) may change these: otherwise the new file
        // is the writer's, as any file it creates.
        let _ = std::os::unix::fs::fchown(temporary.as_file(), Some(meta.uid()), Some(meta.gid()));
    }
    Ok(temporary)
}

/// Syncs the folder holding `path` so that the rename itself is durable (best effort: not
/// every platform can open a folder for syncing).
fn sync_parent(path: &Path) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(parent) {
        let _ = dir.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_reached_by_another_spelling_or_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let photo = dir.path().join("photo.jpg");
        std::fs::write(&photo, b"jpeg bytes").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let spelled = dir.path().join("sub/../photo.jpg");
        let err = ensure_not_input(&spelled, &[&photo]).unwrap_err();
        assert!(err.to_string().contains("photo.jpg"), "{err}");
        #[cfg(unix)]
        {
            let link = dir.path().join("link.csv");
            std::os::unix::fs::symlink(&photo, &link).unwrap();
            assert!(ensure_not_input(&link, &[&photo]).is_err());
        }
        let other = dir.path().join("rows.csv");
        ensure_not_input(&other, &[&photo]).unwrap();
        std::fs::write(&other, b"old").unwrap();
        ensure_not_input(&other, &[&photo]).unwrap();
        // A folder given as input is refused as an output too.
        assert!(ensure_not_input(dir.path(), &[dir.path()]).is_err());
        // A FIFO among the paths does not block the check.
        #[cfg(unix)]
        {
            let fifo = dir.path().join("pipe.jpg");
            let made = std::process::Command::new("mkfifo").arg(&fifo).status();
            if made.is_ok_and(|s| s.success()) {
                assert!(ensure_not_input(&fifo, &[&fifo]).is_err());
                ensure_not_input(&other, &[&fifo]).unwrap();
            }
        }
    }

    #[test]
    fn an_uncommitted_output_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        std::fs::write(&path, b"old").unwrap();
        {
            let mut out = OutputFile::create(&path).unwrap();
            out.write_all(b"half").unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let mut out = OutputFile::create(&path).unwrap();
        out.write_all(b"new").unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        write_atomic(&path, b"whole").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
    }

    #[cfg(unix)]
    #[test]
    fn a_replaced_file_keeps_its_mode_and_a_symlink_keeps_pointing_at_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("private.csv");
        std::fs::write(&real, b"old").unwrap();
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink("private.csv", &link).unwrap();

        write_atomic(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
        let mode = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        // A new file is an ordinary 0644 output, and a dangling link creates its target.
        let dangling = dir.path().join("dangling.csv");
        std::os::unix::fs::symlink("made.csv", &dangling).unwrap();
        write_atomic(&dangling, b"rows").unwrap();
        let made = dir.path().join("made.csv");
        assert_eq!(std::fs::read(&made).unwrap(), b"rows");
        let mode = std::fs::metadata(&made).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        // Nothing else was left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn a_folder_is_not_an_output_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = OutputFile::create(dir.path()).unwrap_err();
        assert!(err.to_string().contains("folder"), "{err}");
    }
}
