//! Reducing a decoded file to the text worth indexing, with its title and the
//! HTML anchors of its headings.
//!
//! Markdown, plain text and code pass through unchanged, so that chunk line
//! numbers are lines of the file. HTML is reduced to its main content and
//! written as Markdown-like text (see `extract_html`); pages that should not
//! be indexed are [`Extraction::Skipped`]. This module does not cut text into
//! chunks; [`chunk`](crate::chunk) does.

use grounded_core::DocumentKind;

use crate::IngestError;
use crate::extract_html::extract_html;
use crate::extract_markdown::markdown_title;

/// The content of one document, ready to be chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedDocument {
    pub kind: DocumentKind,
    /// The HTML `<title>`; for Markdown the first `# ` heading, else its first
    /// heading.
    pub title: Option<String>,
    /// The text to chunk: the file itself, or for HTML its main content as
    /// Markdown-like text.
    pub text: String,
    /// `(byte offset in text, fragment id)` of each HTML heading with an id, in
    /// order; the offset is where the heading's line starts. Empty for other kinds.
    pub anchors: Vec<(usize, String)>,
}

/// What extraction made of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Extraction {
    Content(ExtractedDocument),
    /// The document should not be indexed, for the reason given (a redirect
    /// stub, a page that asks not to be indexed).
    Skipped {
        reason: String,
    },
}

/// Extracts the content of a document of `kind` from its decoded `text`.
///
/// # Errors
/// [`IngestError::Extract`] when HTML extraction cannot run at all; a page that
/// should not be indexed is not an error but [`Extraction::Skipped`].
pub fn extract_document(kind: DocumentKind, text: &str) -> Result<Extraction, IngestError> {
    let title = match kind {
        DocumentKind::Html => return extract_html(text),
        DocumentKind::Markdown => markdown_title(text),
        DocumentKind::Text | DocumentKind::Code => None,
    };
    Ok(Extraction::Content(ExtractedDocument {
        kind,
        title,
        text: text.to_owned(),
        anchors: Vec::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(kind: DocumentKind, text: &str) -> ExtractedDocument {
        match extract_document(kind, text).unwrap() {
            Extraction::Content(document) => document,
            Extraction::Skipped { reason } => panic!("skipped: {reason}"),
        }
    }

    #[test]
    fn markdown_text_and_code_pass_through() {
        let markdown = "Intro\n\n```\n# comment\n```\n\n# Title *here*\n\n## Next\n";
        let document = content(DocumentKind::Markdown, markdown);
        assert_eq!(document.text, markdown);
        assert_eq!(document.title.as_deref(), Some("Title here"));
        assert!(document.anchors.is_empty());

        for kind in [DocumentKind::Text, DocumentKind::Code] {
            let document = content(kind, "# not a title\n");
            assert_eq!(
                (document.text.as_str(), document.title),
                ("# not a title\n", None)
            );
        }
    }

    #[test]
    fn html_goes_through_html_extraction() {
        let document = content(DocumentKind::Html, "<title>T</title><p>Hi</p>");
        assert_eq!(document.kind, DocumentKind::Html);
        assert_eq!(
            (document.title.as_deref(), document.text.as_str()),
            (Some("T"), "Hi\n")
        );
    }

    #[test]
    fn rust_book_page_is_the_chapter_without_furniture() {
        let Some(html) = rust_book_page("ch04-01-what-is-ownership.html") else {
            return;
        };
        let document = content(DocumentKind::Html, &html);
        let text = &document.text;

        assert_eq!(
            document.title.as_deref(),
            Some("What is Ownership? - The Rust Programming Language")
        );
        assert!(
            text.starts_with("## What Is Ownership?\n\n"),
            "{}",
            &text[..200]
        );
        assert!(text.contains("### Ownership Rules\n"));
        assert!(text.contains("```rust\n"));
        assert!(text.contains("let s = String::from(\"hello\");"));
        let furniture = [
            "Keyboard shortcuts",
            "between chapters",
            "Navy",
            "Ayu",
            "localStorage",
        ];
        for text_outside_main in furniture {
            assert!(
                !text.contains(text_outside_main),
                "{text_outside_main:?} leaked"
            );
        }
        assert!(
            !text.contains("#![allow(unused)]"),
            "mdBook's hidden lines leaked"
        );
        let (offset, anchor) = &document.anchors[0];
        assert_eq!((*offset, anchor.as_str()), (0, "what-is-ownership"));
        assert!(
            document
                .anchors
                .iter()
                .any(|(_, id)| id == "ownership-rules")
        );
    }

    #[test]
    fn rust_book_print_page_is_skipped() {
        let Some(html) = rust_book_page("print.html") else {
            return;
        };
        let extraction = extract_document(DocumentKind::Html, &html).unwrap();
        assert!(matches!(extraction, Extraction::Skipped { .. }));
    }

    fn rust_book_page(name: &str) -> Option<String> {
        let output = std::process::Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .ok()?;
        let sysroot = String::from_utf8(output.stdout).ok()?;
        let path = std::path::Path::new(sysroot.trim())
            .join("share/doc/rust/html/book")
            .join(name);
        let html = std::fs::read_to_string(&path).ok();
        if html.is_none() {
            println!(
                "skipping: {} not found (no rust-docs component)",
                path.display()
            );
        }
        html
    }
}
