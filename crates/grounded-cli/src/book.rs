//! The Rust book that rustup installs with the `rust-docs` component.
//!
//! Its directory also holds old editions whose pages only say that they
//! moved, and the site's scripts, styles and fonts; [`EXCLUDES`] leaves those
//! out so that they do not crowd out the real chapters. The whole-book
//! `print.html` and the redirect pages are skipped by the HTML extractor
//! itself, because they ask not to be indexed or redirect.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

/// Parts of the installed book that are not its current text.
pub const EXCLUDES: &[&str] = &[
    "2018-edition",
    "first-edition",
    "second-edition",
    "theme",
    "fonts",
    "css",
    "img",
    "*.js",
];

/// The exclude patterns as the ingest options take them.
pub fn excludes() -> Vec<String> {
    EXCLUDES
        .iter()
        .map(|pattern| (*pattern).to_string())
        .collect()
}

/// The HTML Rust book of the active toolchain.
///
/// # Errors
/// Fails, saying how to install it, when `rustc` cannot be run or the book
/// is not installed.
pub fn installed_book() -> anyhow::Result<PathBuf> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("failed to run `rustc --print sysroot` to find the Rust book")?;
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let book = Path::new(&sysroot).join("share/doc/rust/html/book");

    if !book.join("index.html").is_file() {
        anyhow::bail!(
            "the Rust book is not installed at {}; install it with \
             `rustup component add rust-docs`, or pass another book with --book DIR",
            book.display()
        );
    }
    Ok(book)
}
