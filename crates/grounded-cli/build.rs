//! Records the git commit the binary is built from, and whether the work tree
//! differed from it, as `GROUNDED_GIT_COMMIT` and `GROUNDED_GIT_DIRTY`, for
//! `grounded eval` to write beside its figures. Both are `unknown` where git
//! or the repository is absent (a source tarball): this script never fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let commit = git(&manifest_dir, &["rev-parse", "HEAD"]);
    let dirty = match (
        &commit,
        git(
            &manifest_dir,
            &["--no-optional-locks", "status", "--porcelain"],
        ),
    ) {
        (Some(_), Some(changes)) => (!changes.is_empty()).to_string(),
        _ => "unknown".to_owned(),
    };
    println!(
        "cargo:rustc-env=GROUNDED_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rustc-env=GROUNDED_GIT_DIRTY={dirty}");

    println!("cargo:rerun-if-changed=build.rs");
    if let Some(git_dir) = git(&manifest_dir, &["rev-parse", "--absolute-git-dir"]) {
        watch_repository(Path::new(&git_dir), &manifest_dir);
    }
}

/// Reruns this script when HEAD moves (a checkout, a commit: HEAD, the
/// branch's ref, packed refs) and when a source of the workspace is edited,
/// so the dirty flag follows every edit that changes the binary. Tests and
/// benchmarks are not watched, nor the index, which every `git status` of
/// another process may touch: watching them would rebuild for nothing.
fn watch_repository(git_dir: &Path, manifest_dir: &Path) {
    let mut watched = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
    if let Some(branch) = git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git_dir.join(branch));
    }
    if let Some(workspace) = manifest_dir.parent().and_then(Path::parent) {
        watched.extend(["Cargo.toml", "Cargo.lock", "migrations"].map(|f| workspace.join(f)));
        watched.extend(crate_sources(&workspace.join("crates")));
    }
    // Cargo reruns a script on every build while a path it watches is
    // missing (a ref that is packed, a repository without packed refs).
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// What each crate under `crates` builds from: everything in its directory
/// but its tests and benchmarks.
fn crate_sources(crates: &Path) -> Vec<PathBuf> {
    let entries = |dir: &Path| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
    };
    entries(crates)
        .flat_map(|dir| entries(&dir).collect::<Vec<_>>())
        .filter(|path| !path.ends_with("tests") && !path.ends_with("benches"))
        .collect()
}

/// The trimmed output of `git ARGS` run in `dir`, or `None` when git is
/// missing or fails (no repository).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
