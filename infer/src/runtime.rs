//! Finding and loading the ONNX Runtime shared library (`ort` with `load-dynamic`).
//!
//! Search order, first library that loads wins:
//! 1. the path given by the caller (`--ort-lib`), then the `ORT_DYLIB_PATH` variable (a
//!    library file, or a folder holding one: a wheel's `onnxruntime/capi/`, `lib/`);
//! 2. the `onnxruntime` or `onnxruntime-gpu` Python package of `python3` on `PATH` (its wheel
//!    ships `onnxruntime/capi/libonnxruntime.so.X.Y.Z`), then the repository-local copy that
//!    `scripts/setup-ort` installs into `.tools/onnxruntime`;
//! 3. the system library path (`LD_LIBRARY_PATH`, the usual lib folders, the loader cache).
//!
//! Steps 2 and 3 are only looked at when step 1 names nothing (asking `python3` for its
//! package path costs a process start, a fifth of a second behind pyenv's shims). ONNX
//! Runtime allows one library and one environment per process, so the first successful load
//! is kept for the life of the process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::Error;

/// The ONNX Runtime release this project is tested with.
pub const ORT_VERSION: &str = "1.31.1";

/// Environment variable naming the ONNX Runtime shared library.
pub const ORT_DYLIB_ENV: &str = "ORT_DYLIB_PATH";

/// What to do when no library is found, appended to the error.
const HOW_TO_GET: &str = "Get ONNX Runtime with `scripts/setup-ort` (installs the onnxruntime==1.31.1 wheel into .tools/onnxruntime, where hands-infer looks) or `pip install onnxruntime==1.31.1` (onnxruntime-gpu for CUDA), or point --ort-lib / ORT_DYLIB_PATH at a libonnxruntime.so (1.24 or newer).";

/// Where the loaded library was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    /// Given by the caller (`--ort-lib`).
    Explicit,
    /// The `ORT_DYLIB_PATH` environment variable.
    EnvironmentVariable,
    /// A Python `onnxruntime` / `onnxruntime-gpu` package.
    PythonPackage,
    /// The repository's `.tools/onnxruntime`, filled by `scripts/setup-ort`.
    RepositoryTools,
    /// The system library path.
    System,
}

impl std::fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LibrarySource::Explicit => "--ort-lib",
            LibrarySource::EnvironmentVariable => ORT_DYLIB_ENV,
            LibrarySource::PythonPackage => "Python package",
            LibrarySource::RepositoryTools => ".tools (scripts/setup-ort)",
            LibrarySource::System => "system library path",
        })
    }
}

/// The loaded ONNX Runtime: the library and the process-wide environment sessions share.
pub struct Runtime {
    library: PathBuf,
    source: LibrarySource,
    pub(crate) environment: ort::environment::Environment,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// The shared library file that was loaded.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Where it was found.
    pub fn source(&self) -> LibrarySource {
        self.source
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

/// Loads ONNX Runtime once per process and returns it. `explicit` (e.g. `--ort-lib`) is
/// tried first; once a library is loaded, later calls return it whatever they pass.
pub fn runtime(explicit: Option<&Path>) -> Result<&'static Runtime, Error> {
    if let Some(runtime) = RUNTIME.get() {
        warn_if_other(runtime, explicit);
        return Ok(runtime);
    }
    let _loading = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(runtime) = RUNTIME.get() {
        warn_if_other(runtime, explicit);
        return Ok(runtime);
    }
    let named = named_candidates(explicit);
    let found = std::iter::once_with(|| found_candidates(&named)).flatten();
    let mut failures = Vec::new();
    for (library, source) in named.iter().cloned().chain(found) {
        let strict = matches!(
            source,
            LibrarySource::Explicit | LibrarySource::EnvironmentVariable
        );
        match ort::init_from(&library) {
            Ok(builder) => {
                let environment = builder
                    .with_name("hands-infer")
                    .build()
                    .map_err(|e| Error::Runtime(format!("cannot start ONNX Runtime: {e}")))?;
                tracing::info!(library = %library.display(), %source, "loaded ONNX Runtime");
                let runtime = RUNTIME.get_or_init(|| Runtime {
                    library,
                    source,
                    environment,
                });
                return Ok(runtime);
            }
            // A library the user named must load: do not silently fall back to another.
            Err(e) if strict => {
                return Err(Error::Runtime(format!(
                    "cannot load ONNX Runtime {} given by {source}: {e}. {HOW_TO_GET}",
                    library.display()
                )))
            }
            Err(e) => failures.push(format!("{} ({source}): {e}", library.display())),
        }
    }
    let tried = if failures.is_empty() {
        "no libonnxruntime.so found in the Python packages of python3, .tools/onnxruntime or the system library path".to_string()
    } else {
        format!("tried {}", failures.join("; "))
    };
    Err(Error::Runtime(format!(
        "ONNX Runtime not found: {tried}. {HOW_TO_GET}"
    )))
}

fn warn_if_other(runtime: &Runtime, explicit: Option<&Path>) {
    if let Some(path) = explicit {
        if path != runtime.library {
            tracing::warn!(
                requested = %path.display(),
                loaded = %runtime.library.display(),
                "ONNX Runtime is already loaded in this process; keeping the loaded library"
            );
        }
    }
}

/// The libraries the caller (`explicit`) and `ORT_DYLIB_PATH` name, in that order.
fn named_candidates(explicit: Option<&Path>) -> Vec<(PathBuf, LibrarySource)> {
    let mut out = Vec::new();
    if let Some(path) = explicit {
        out.push((named_library(path), LibrarySource::Explicit));
    }
    if let Some(path) = std::env::var_os(ORT_DYLIB_ENV).filter(|v| !v.is_empty()) {
        out.push((
            named_library(Path::new(&path)),
            LibrarySource::EnvironmentVariable,
        ));
    }
    out
}

/// The libraries found by looking (Python packages, the repository's `.tools`, the system
/// library path, the loader's own search), in order, without those in `named` or twice.
fn found_candidates(named: &[(PathBuf, LibrarySource)]) -> Vec<(PathBuf, LibrarySource)> {
    let mut out: Vec<(PathBuf, LibrarySource)> = Vec::new();
    let mut push = |path: PathBuf, source| {
        let seen = |(p, _): &(PathBuf, LibrarySource)| *p == path;
        if !named.iter().any(seen) && !out.iter().any(seen) {
            out.push((path, source));
        }
    };
    for dir in python_paths() {
        for lib in libraries_in(&dir.join("onnxruntime").join("capi")) {
            push(lib, LibrarySource::PythonPackage);
        }
    }
    for root in repository_roots() {
        let capi = root.join(".tools/onnxruntime/onnxruntime/capi");
        for lib in libraries_in(&capi) {
            push(lib, LibrarySource::RepositoryTools);
        }
    }
    let mut system_dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    system_dirs.extend(
        [
            "/usr/local/lib",
            "/usr/lib",
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib64",
            "/opt/onnxruntime/lib",
        ]
        .map(PathBuf::from),
    );
    for dir in system_dirs {
        for lib in libraries_in(&dir) {
            push(lib, LibrarySource::System);
        }
    }
    // Last, the dynamic loader's own search (ld.so.cache).
    push(PathBuf::from(default_name()), LibrarySource::System);
    out
}

fn default_name() -> &'static str {
    if cfg!(target_os = "windows") {
        "onnxruntime.dll"
    } else if cfg!(target_os = "macos") {
        "libonnxruntime.dylib"
    } else {
        "libonnxruntime.so"
    }
}

/// What a path given by the user names: a folder stands for the newest library in it or in
/// its `capi/`, `onnxruntime/capi/` (a wheel or `pip --target` folder) or `lib/`; anything
/// else, or a folder without one, is itself tried (and its load error names it).
fn named_library(path: &Path) -> PathBuf {
    let folders = [
        path.to_path_buf(),
        path.join("capi"),
        path.join("onnxruntime").join("capi"),
        path.join("lib"),
    ];
    path.is_dir()
        .then(|| {
            folders
                .iter()
                .find_map(|dir| libraries_in(dir).into_iter().next())
        })
        .flatten()
        .unwrap_or_else(|| path.to_path_buf())
}

/// `libonnxruntime.so*` files in `dir` (not the provider plugins), newest version first.
fn libraries_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let stem = default_name();
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let rest = name.strip_prefix(stem)?;
            // `libonnxruntime.so` or `libonnxruntime.so.1.31.1`
            let version = match rest.strip_prefix('.') {
                Some(v) => v
                    .split('.')
                    .map(|p| p.parse().ok())
                    .collect::<Option<_>>()?,
                None if rest.is_empty() => Vec::new(),
                None => return None,
            };
            Some((version, e.path()))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// The module search path of `python3` (or `python`) on `PATH`, where an `onnxruntime`
/// package would be.
fn python_paths() -> Vec<PathBuf> {
    let script = "import sys\nfor p in sys.path:\n    print(p)";
    for python in ["python3", "python"] {
        let Ok(output) = Command::new(python).args(["-c", script]).output() else {
            continue;
        };
        if output.status.success() {
            return String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter(|l| !l.is_empty())
                .map(PathBuf::from)
                .collect();
        }
    }
    Vec::new()
}

/// Folders that may be this repository's root: the one this crate was built from, and the
/// ancestors of the running executable (`target/<profile>/hands-infer`).
fn repository_roots() -> Vec<PathBuf> {
    let mut roots = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("..")];
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    roots
        .into_iter()
        .filter_map(|root| root.canonicalize().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_versioned_libraries_newest_first_and_skips_plugins() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "libonnxruntime.so.1.24.0",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime_providers_shared.so",
            "libonnxruntime.so.backup",
            "other.so",
        ] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let names: Vec<String> = libraries_in(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["libonnxruntime.so.1.31.1", "libonnxruntime.so.1.24.0"]
        );
    }

    #[test]
    fn a_named_folder_stands_for_its_newest_library() {
        let dir = tempfile::tempdir().unwrap();
        let capi = dir.path().join("onnxruntime").join("capi");
        std::fs::create_dir_all(&capi).unwrap();
        for name in [
            "libonnxruntime.so.1.9.0",
            "libonnxruntime.so.1.31.1",
            "libonnxruntime.so.backup",
            "libonnxruntime_providers_shared.so",
        ] {
            std::fs::write(capi.join(name), b"").unwrap();
        }
        let list = named_candidates(Some(dir.path()));
        assert_eq!(
            list[0],
            (
                capi.join("libonnxruntime.so.1.31.1"),
                LibrarySource::Explicit
            )
        );
        let explicit = list
            .iter()
            .filter(|(_, source)| *source == LibrarySource::Explicit);
        assert_eq!(explicit.count(), 1, "one library per named path");
        // A folder without one is tried as it is, so that the error names it.
        let empty = tempfile::tempdir().unwrap();
        let list = named_candidates(Some(empty.path()));
        assert_eq!(
            list[0],
            (empty.path().to_path_buf(), LibrarySource::Explicit)
        );
    }

    #[test]
    fn explicit_path_comes_first() {
        let named = named_candidates(Some(Path::new("/nowhere/libonnxruntime.so")));
        assert_eq!(named[0].1, LibrarySource::Explicit);
        let found = found_candidates(&named);
        assert_eq!(found.last().unwrap().0, PathBuf::from(default_name()));
        assert!(found.iter().all(|(path, _)| *path != named[0].0));
    }
}
