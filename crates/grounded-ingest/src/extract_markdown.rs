//! The heading structure of Markdown text, from a real CommonMark parser, so
//! that a `#` line inside a fenced code block is not mistaken for a heading.
//!
//! Used for a Markdown document's title and for the section path of each chunk
//! (of Markdown files and of the Markdown-like text that HTML extraction makes).

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

/// One heading of a Markdown text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Heading {
    /// Byte offset in the text where the heading's line starts.
    pub offset: usize,
    /// 1 for `#`, up to 6 for `######`.
    pub level: usize,
    /// The heading's text without markup.
    pub text: String,
}

/// All headings of `text`, in order, ATX (`## …`) and setext (underlined) alike.
pub(crate) fn markdown_headings(text: &str) -> Vec<Heading> {
    let options = Options::ENABLE_YAML_STYLE_METADATA_BLOCKS | Options::ENABLE_TABLES;
    let mut headings = Vec::new();
    let mut current: Option<Heading> = None;

    for (event, range) in Parser::new_ext(text, options).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                let offset = line_start(text, range.start);
                let level = level as usize;
                current = Some(Heading {
                    offset,
                    level,
                    text: String::new(),
                });
            }
            Event::End(TagEnd::Heading(_)) => headings.extend(current.take().map(finish)),
            Event::Text(part) | Event::Code(part) => {
                if let Some(heading) = current.as_mut() {
                    heading.text.push_str(&part);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some(heading) = current.as_mut() {
                    heading.text.push(' ');
                }
            }
            _ => {}
        }
    }
    headings
}

/// The text of the first level-1 heading, the usual title of a Markdown file;
/// else the first heading, as in a book's sub-chapter that starts at `##`.
pub(crate) fn markdown_title(text: &str) -> Option<String> {
    let headings = markdown_headings(text);
    let title = headings
        .iter()
        .find(|h| h.level == 1)
        .or_else(|| headings.first())?;
    Some(title.text.clone()).filter(|title| !title.is_empty())
}

fn finish(mut heading: Heading) -> Heading {
    heading.text = heading
        .text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    heading
}

fn line_start(text: &str, offset: usize) -> usize {
    text[..offset].rfind('\n').map_or(0, |newline| newline + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_skip_code_fences_and_strip_markup() {
        let text = "# The `String` Type\n\ntext\n\n```sh\n# not a heading\n```\n\n\
                    ## Sub *one* ##\n\nSetext\n------\n";
        let headings = markdown_headings(text);
        let summary: Vec<_> = headings
            .iter()
            .map(|h| (h.level, h.text.as_str()))
            .collect();
        assert_eq!(
            summary,
            [(1, "The String Type"), (2, "Sub one"), (2, "Setext")]
        );
        assert_eq!(headings[1].offset, text.find("## Sub").unwrap());
        assert_eq!(headings[2].offset, text.find("Setext").unwrap());
    }

    #[test]
    fn title_is_the_first_level_one_heading() {
        assert_eq!(
            markdown_title("intro\n\n## Two\n\n# One\n").as_deref(),
            Some("One")
        );
        assert_eq!(
            markdown_title("## Sub-chapter\n\n### Part\n").as_deref(),
            Some("Sub-chapter")
        );
        assert_eq!(markdown_title("no headings"), None);
        assert_eq!(
            markdown_title("---\ntitle: x\n---\n# Real\n").as_deref(),
            Some("Real")
        );
    }
}
