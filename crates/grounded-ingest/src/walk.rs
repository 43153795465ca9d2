//! Finding the files to ingest under the paths a user gives.
//!
//! The walk honours `.gitignore` and `.ignore` files (inside a git repository or
//! not), skips hidden files and directories, applies the user's exclude globs and
//! keeps only files whose extension names a [`DocumentKind`]. It does not read
//! file contents: binary files with a text extension are caught by
//! [`decode`](crate::decode).

use std::path::{Component, Path, PathBuf};

use grounded_core::DocumentKind;
use ignore::overrides::{Override, OverrideBuilder};
use ignore::{DirEntry, WalkBuilder};

use crate::IngestError;

/// How to walk the given paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkOptions {
    /// Follow symbolic links to files and directories.
    pub follow_links: bool,
    /// Glob patterns, relative to each root, of paths to leave out
    /// (gitignore syntax: `drafts/`, `*.min.js`, `**/vendor/**`).
    pub exclude: Vec<String>,
    /// Files larger than this are reported as [`IngestError::FileTooLarge`].
    pub max_file_bytes: u64,
}

impl Default for WalkOptions {
    fn default() -> Self {
        Self {
            follow_links: false,
            exclude: Vec::new(),
            max_file_bytes: 16 * 1024 * 1024,
        }
    }
}

/// A file found by the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path to open.
    pub path: PathBuf,
    /// The path for display and for ids: `/`-separated, without `./` parts.
    pub source_path: String,
    pub kind: DocumentKind,
}

/// Walks `roots` and returns the files to ingest, sorted by path, each once.
///
/// A root may be a directory or a single file. Problems do not stop the walk:
/// they come back beside the files, one error each.
///
/// # Errors
/// The returned errors name their path: a root that does not exist
/// ([`IngestError::MissingRoot`]), a root file of an unsupported type, an invalid
/// exclude pattern, an entry the walk could not read, a file over
/// `max_file_bytes`.
pub fn walk_paths(roots: &[PathBuf], opts: &WalkOptions) -> (Vec<SourceFile>, Vec<IngestError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();

    for root in roots {
        walk_root(root, opts, &mut files, &mut errors);
    }

    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    tracing::debug!(
        files = files.len(),
        errors = errors.len(),
        "ingest.walk done"
    );
    (files, errors)
}

fn walk_root(
    root: &Path,
    opts: &WalkOptions,
    files: &mut Vec<SourceFile>,
    errors: &mut Vec<IngestError>,
) {
    if !root.exists() {
        errors.push(IngestError::MissingRoot {
            path: root.to_path_buf(),
        });
        return;
    }
    if root.is_file() {
        return match document_kind(root) {
            Some(kind) => check_size(root, kind, opts, files, errors),
            None => errors.push(IngestError::UnsupportedFile {
                path: root.to_path_buf(),
            }),
        };
    }

    let overrides = match exclude_overrides(root, &opts.exclude) {
        Ok(overrides) => overrides,
        Err(error) => return errors.push(error),
    };
    for entry in walker(root, opts, overrides) {
        match entry {
            Ok(entry) => visit_entry(&entry, opts, files, errors),
            Err(source) => errors.push(IngestError::Walk {
                path: root.to_path_buf(),
                source,
            }),
        }
    }
}

fn walker(root: &Path, opts: &WalkOptions, overrides: Override) -> ignore::Walk {
    WalkBuilder::new(root)
        .hidden(true)
        .git_ignore(true)
        .require_git(false)
        .follow_links(opts.follow_links)
        .overrides(overrides)
        .sort_by_file_path(Path::cmp)
        .build()
}

/// Turns exclude globs into `ignore` overrides; a `!` there means "leave out".
fn exclude_overrides(root: &Path, patterns: &[String]) -> Result<Override, IngestError> {
    let mut builder = OverrideBuilder::new(root);
    for pattern in patterns {
        builder
            .add(&format!("!{pattern}"))
            .map_err(|source| IngestError::ExcludePattern {
                pattern: pattern.clone(),
                source,
            })?;
    }
    builder
        .build()
        .map_err(|source| IngestError::ExcludePattern {
            pattern: patterns.join(", "),
            source,
        })
}

fn visit_entry(
    entry: &DirEntry,
    opts: &WalkOptions,
    files: &mut Vec<SourceFile>,
    errors: &mut Vec<IngestError>,
) {
    let is_file = entry.file_type().is_some_and(|t| t.is_file());
    if !is_file {
        return;
    }
    match document_kind(entry.path()) {
        Some(kind) => check_size(entry.path(), kind, opts, files, errors),
        None => errors.push(IngestError::UnsupportedFile {
            path: entry.path().to_path_buf(),
        }),
    }
}

fn check_size(
    path: &Path,
    kind: DocumentKind,
    opts: &WalkOptions,
    files: &mut Vec<SourceFile>,
    errors: &mut Vec<IngestError>,
) {
    let size = match path.metadata() {
        Ok(metadata) => metadata.len(),
        Err(source) => {
            let path = path.to_path_buf();
            return errors.push(IngestError::Read { path, source });
        }
    };
    if size > opts.max_file_bytes {
        let (path, limit) = (path.to_path_buf(), opts.max_file_bytes);
        return errors.push(IngestError::FileTooLarge { path, size, limit });
    }
    files.push(SourceFile {
        path: path.to_path_buf(),
        source_path: display_path(path),
        kind,
    });
}

/// The `/`-separated form of a path, without `.` components.
fn display_path(path: &Path) -> String {
    let mut out = String::new();
    for component in path.components() {
        match component {
            Component::RootDir => out.push('/'),
            Component::CurDir => {}
            other => {
                if !out.is_empty() && !out.ends_with('/') {
                    out.push('/');
                }
                out.push_str(&other.as_os_str().to_string_lossy());
            }
        }
    }
    out
}

const MARKDOWN_EXTENSIONS: &[&str] = &["md", "markdown", "mdown", "mkd"];
const HTML_EXTENSIONS: &[&str] = &["html", "htm", "xhtml"];
const TEXT_EXTENSIONS: &[&str] = &["txt", "text", "rst", "adoc", "asciidoc", "org"];
const CODE_EXTENSIONS: &[&str] = &[
    "rs", "py", "pyi", "js", "mjs", "cjs", "jsx", "ts", "tsx", "go", "java", "kt", "kts", "scala",
    "c", "h", "cc", "cpp", "cxx", "hpp", "hh", "hxx", "cs", "fs", "rb", "php", "swift", "m", "mm",
    "lua", "pl", "pm", "r", "jl", "hs", "ml", "mli", "ex", "exs", "erl", "hrl", "clj", "dart",
    "zig", "nim", "vue", "svelte", "css", "scss", "sass", "less", "sql", "sh", "bash", "zsh",
    "fish", "ps1", "bat", "toml", "yaml", "yml", "json", "jsonc", "ini", "cfg", "conf", "xml",
    "proto", "graphql", "gradle", "cmake", "mk", "tf", "hcl", "nix",
];
/// Files without an extension that are code, not prose.
const CODE_FILE_NAMES: &[&str] = &["Makefile", "Dockerfile", "Containerfile", "Justfile"];

/// The kind of document a path holds, judged by its extension; `None` for
/// files grounded does not ingest (images, PDFs, archives, …).
pub fn document_kind(path: &Path) -> Option<DocumentKind> {
    let Some(extension) = path.extension() else {
        let name = path.file_name()?.to_string_lossy();
        let is_code = CODE_FILE_NAMES.contains(&name.as_ref());
        return Some(if is_code {
            DocumentKind::Code
        } else {
            DocumentKind::Text
        });
    };
    let extension = extension.to_string_lossy().to_ascii_lowercase();
    let is = |list: &[&str]| list.contains(&extension.as_str());

    if is(MARKDOWN_EXTENSIONS) {
        Some(DocumentKind::Markdown)
    } else if is(HTML_EXTENSIONS) {
        Some(DocumentKind::Html)
    } else if is(TEXT_EXTENSIONS) {
        Some(DocumentKind::Text)
    } else if is(CODE_EXTENSIONS) {
        Some(DocumentKind::Code)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    fn write(root: &Path, relative: &str, contents: &str) {
        let path = root.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    fn walked(roots: &[PathBuf], opts: &WalkOptions) -> Vec<String> {
        let (files, errors) = walk_paths(roots, opts);
        assert!(errors.is_empty(), "{errors:?}");
        files.into_iter().map(|f| f.source_path).collect()
    }

    #[test]
    fn kinds_come_from_extensions() {
        let kind = |p: &str| document_kind(Path::new(p));
        assert_eq!(kind("a/b.md"), Some(DocumentKind::Markdown));
        assert_eq!(kind("B.MARKDOWN"), Some(DocumentKind::Markdown));
        assert_eq!(kind("x.htm"), Some(DocumentKind::Html));
        assert_eq!(kind("x.xhtml"), Some(DocumentKind::Html));
        assert_eq!(kind("notes.txt"), Some(DocumentKind::Text));
        assert_eq!(kind("guide.rst"), Some(DocumentKind::Text));
        assert_eq!(kind("LICENSE"), Some(DocumentKind::Text));
        assert_eq!(kind("Makefile"), Some(DocumentKind::Code));
        assert_eq!(kind("main.rs"), Some(DocumentKind::Code));
        assert_eq!(kind("Cargo.toml"), Some(DocumentKind::Code));
        assert_eq!(kind("logo.png"), None);
        assert_eq!(kind("manual.pdf"), None);
        assert_eq!(kind("src.tar.gz"), None);
    }

    #[test]
    fn walk_respects_gitignore_hidden_and_excludes_outside_git() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, ".gitignore", "target/\n*.log.txt\n");
        write(root, "b.md", "# b");
        write(root, "a/z.rs", "fn main() {}");
        write(root, "a/y.html", "<p>y</p>");
        write(root, "target/out.txt", "built");
        write(root, "run.log.txt", "log");
        write(root, ".hidden/secret.md", "hidden");
        write(root, ".dotfile.txt", "hidden");
        write(root, "image.png", "not text");
        write(root, "drafts/wip.md", "draft");

        let opts = WalkOptions {
            exclude: vec!["drafts/".into()],
            ..WalkOptions::default()
        };
        let (files, errors) = walk_paths(&[root.to_path_buf()], &opts);

        let unsupported: Vec<_> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(unsupported.len(), 1, "{unsupported:?}");
        assert!(unsupported[0].contains("unsupported") && unsupported[0].contains("image.png"));
        let names: Vec<_> = files
            .iter()
            .map(|f| f.path.strip_prefix(root).unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["a/y.html", "a/z.rs", "b.md"]);
        assert_eq!(files[0].kind, DocumentKind::Html);
        assert_eq!(files[1].kind, DocumentKind::Code);
    }

    #[test]
    fn a_root_may_be_a_file_and_results_are_sorted_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "docs/b.txt", "b");
        write(root, "docs/a.txt", "a");

        let docs = root.join("docs");
        let roots = [docs.join("b.txt"), docs.clone(), docs.join("./a.txt")];
        let paths = walked(&roots, &WalkOptions::default());

        let prefix = display_path(&docs);
        assert_eq!(
            paths,
            [format!("{prefix}/a.txt"), format!("{prefix}/b.txt")]
        );
    }

    #[test]
    fn missing_roots_unsupported_files_and_large_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "big.txt", &"x".repeat(100));
        write(root, "small.txt", "x");
        write(root, "photo.jpg", "x");

        let opts = WalkOptions {
            max_file_bytes: 10,
            ..WalkOptions::default()
        };
        let missing = root.join("nope");
        let roots = [root.to_path_buf(), missing.clone(), root.join("photo.jpg")];
        let (files, errors) = walk_paths(&roots, &opts);

        assert_eq!(files.len(), 1);
        assert!(files[0].source_path.ends_with("/small.txt"));
        let messages: Vec<_> = errors.iter().map(ToString::to_string).collect();
        // photo.jpg is reported twice: found in the directory, and given as a root.
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(
            messages
                .iter()
                .any(|m| m.contains("big.txt") && m.contains("100 bytes"))
        );
        assert!(messages.contains(&format!("path {} does not exist", missing.display())));
        assert!(
            messages
                .iter()
                .any(|m| m.contains("unsupported") && m.contains("photo.jpg"))
        );
    }

    #[test]
    fn an_invalid_exclude_pattern_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalkOptions {
            exclude: vec!["a/{b".into()],
            ..WalkOptions::default()
        };
        let (_, errors) = walk_paths(&[dir.path().to_path_buf()], &opts);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("a/{b"), "{}", errors[0]);
    }

    #[test]
    fn display_paths_are_slash_separated_without_dot_parts() {
        assert_eq!(display_path(Path::new("./docs/./a.md")), "docs/a.md");
        assert_eq!(display_path(Path::new("/srv/docs/a.md")), "/srv/docs/a.md");
        assert_eq!(display_path(Path::new("../x/a.md")), "../x/a.md");
    }
}
