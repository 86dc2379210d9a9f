//! One writer per run folder and per resumed output: an advisory lock held for the run.
//!
//! A run folder's lock file is `DIR/.lock`, an output file's `.NAME.lock` beside it; each
//! holds the process id of its holder. The lock is the operating system's (`flock` on
//! Unix), so it ends with its process however that ends: the lock file a killed process
//! left behind is taken over by the next run. A second process is refused with the
//! holder's process id.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::interrupt::RemoveOnInterrupt;
use crate::Error;

/// How often a lock file removed by its holder between our open and lock is tried again.
const ATTEMPTS: usize = 8;

/// A held lock; dropping it removes the lock file and releases the lock.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    lock: PathBuf,
    /// A folder this lock created, removed with the lock if the run left it empty.
    created: Option<PathBuf>,
    _registered: RemoveOnInterrupt,
}

impl RunLock {
    /// Locks the run folder `dir` with `dir/.lock`, creating the folder (and its parents)
    /// if needed; a folder created here and still empty when the lock is dropped (a run
    /// refused before it wrote anything) is removed with it.
    pub fn folder(dir: &Path) -> Result<RunLock, Error> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut lock = RunLock::acquire(dir, dir.join(".lock"))?;
        lock.created = created.then(|| dir.to_path_buf());
        Ok(lock)
    }

    /// Locks the output file `path` with `.NAME.lock` in its folder. An existing `path` is
    /// locked as the file it is after symlinks (writes go through a symlink to its target,
    /// see [`crate::output`]), so two runs writing one file by two names are refused as two
    /// by one name are.
    pub fn file(path: &Path) -> Result<RunLock, Error> {
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        let name = target.file_name().unwrap_or(target.as_os_str());
        let mut lock_name = std::ffi::OsString::from(".");
        lock_name.push(name);
        lock_name.push(".lock");
        RunLock::acquire(path, target.with_file_name(lock_name))
    }

    /// The lock file.
    pub fn lock_file(&self) -> &Path {
        &self.lock
    }

    fn acquire(locked: &Path, lock: PathBuf) -> Result<RunLock, Error> {
        for _ in 0..ATTEMPTS {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&lock)
                .map_err(|e| Error::io(&lock, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Err(Error::Locked {
                        path: locked.to_path_buf(),
                        lock,
                        holder: holder(&mut file),
                    })
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(&lock, e)),
            }
            // The holder may have removed the file between our open and our lock: then the
            // lock is on a file nobody else will open, and the path is tried again.
            if !same_file(&file, &lock) {
                continue;
            }
            let registered = RemoveOnInterrupt::new(&lock);
            file.set_len(0)
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .and_then(|()| file.flush())
                .map_err(|e| Error::io(&lock, e))?;
            return Ok(RunLock {
                file,
                lock,
                created: None,
                _registered: registered,
            });
        }
        Err(Error::io(
            &lock,
            std::io::Error::other("the lock file kept being replaced while it was taken"),
        ))
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still held, so a process that opens it afterwards finds it gone
        // (see `acquire`) rather than locking a file the next run no longer uses.
        let _ = std::fs::remove_file(&self.lock);
        let _ = self.file.unlock();
        if let Some(dir) = &self.created {
            let _ = std::fs::remove_dir(dir); // only if empty
        }
    }
}

/// The process id the holder wrote in its lock file, when it reads as one.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_process_id() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::folder(dir.path()).unwrap();
        let err = RunLock::folder(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("process {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        drop(first);
        assert!(!dir.path().join(".lock").exists());
        RunLock::folder(dir.path()).unwrap();

        // A run folder made for a run that wrote nothing goes with its lock.
        let run = dir.path().join("runs/new");
        drop(RunLock::folder(&run).unwrap());
        assert!(!run.exists());
        let lock = RunLock::folder(&run).unwrap();
        std::fs::write(run.join("config.json"), "{}").unwrap();
        drop(lock);
        assert!(run.join("config.json").exists());
        assert!(!run.join(".lock").exists());
    }

    #[test]
    fn a_lock_file_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let rows = dir.path().join("rows.csv");
        // What a killed holder leaves: the file with its id, but no lock on it.
        std::fs::write(dir.path().join(".rows.csv.lock"), "4194303\n").unwrap();
        let lock = RunLock::file(&rows).unwrap();
        let text = std::fs::read_to_string(lock.lock_file()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
    }

    #[test]
    fn a_file_reached_through_a_symlink_is_locked_as_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let rows = dir.path().join("rows.csv");
        std::fs::write(&rows, "path,label\n").unwrap();
        let other = dir.path().join("elsewhere");
        std::fs::create_dir(&other).unwrap();
        let link = other.join("link.csv");
        std::os::unix::fs::symlink(&rows, &link).unwrap();
        let first = RunLock::file(&rows).unwrap();
        let err = RunLock::file(&link).unwrap_err().to_string();
        assert!(err.contains("link.csv"), "{err}");
        drop(first);
        let by_link = RunLock::file(&link).unwrap();
        assert_eq!(
            by_link.lock_file(),
            dir.path().canonicalize().unwrap().join(".rows.csv.lock")
        );
        assert!(RunLock::file(&rows).is_err());
    }
}
