//! Reducing an HTML page to its main content, written out as Markdown-like text.
//!
//! The page is parsed with `scraper` (html5ever, the browsers' parsing rules).
//! Pages that ask not to be indexed and redirect stubs are skipped. The main
//! content is the first `main`, `article`, `[role=main]` or `#content` element,
//! else `body`, without navigation, scripts, sidebars and other page furniture.
//! It is written as headings (`#`…), paragraphs separated by blank lines,
//! fenced code blocks, `- ` list items and ` | `-separated table rows, so that
//! the Markdown chunker can cut it at its structure. Links keep their text,
//! images are dropped.
//!
//! The tree is walked with an explicit edge iterator, not recursion, so deeply
//! nested markup cannot overflow the stack.
//!
//! Known shortcoming: a stub page that only says the page has moved, without
//! a meta refresh (the Rust book's `2018-edition/` and `first-edition/`
//! pages), is extracted like any other page. Such stubs cost near-duplicate
//! hits titled like the real chapters; telling them apart needs a rule across
//! the whole collection (a short page whose title another page also has),
//! which this per-page step cannot see.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::LazyLock;

use ego_tree::iter::Edge;
use ego_tree::{NodeId, NodeRef};
use grounded_core::DocumentKind;
use scraper::{ElementRef, Html, Node, Selector};

use crate::IngestError;
use crate::extract::{ExtractedDocument, Extraction};

/// Lists nested deeper than this are indented no further, so that absurdly
/// nested markup cannot blow up the text with indentation.
const MAX_INDENTED_LISTS: usize = 8;

/// Elements tried in turn as the page's main content, before falling back to `body`.
const MAIN_CANDIDATES: [&str; 4] = ["main", "article", "[role=main]", "#content"];

/// Page furniture removed from the main content. `.boring` marks the lines
/// that mdBook hides in code examples (`fn main() {` wrappers).
const REMOVED: &str = "nav, script, style, aside, header, footer, noscript, template, button, \
                       .sidebar, #sidebar, .nav-chapters, .menu-bar, .boring";

/// Elements whose content is never text a reader sees as such.
#[rustfmt::skip]
const NEVER_TEXT: &[&str] = &[
    "img", "svg", "canvas", "iframe", "object", "embed", "select", "input", "textarea", "audio",
    "video", "map", "script", "style", "template", "head",
];

/// Elements that start and end a block; other elements are inline.
#[rustfmt::skip]
const BLOCKS: &[&str] = &[
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
    "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header",
    "hgroup", "hr", "html", "legend", "main", "menu", "nav", "ol", "p", "search", "section",
    "summary", "table", "tbody", "tfoot", "thead", "ul",
];

struct Selectors {
    main: Vec<Selector>,
    removed: Selector,
    title: Selector,
    meta: Selector,
}

impl Selectors {
    fn parse() -> Result<Self, String> {
        let parse =
            |css: &str| Selector::parse(css).map_err(|e| format!("bad selector {css}: {e}"));
        Ok(Self {
            main: MAIN_CANDIDATES
                .iter()
                .map(|css| parse(css))
                .collect::<Result<_, _>>()?,
            removed: parse(REMOVED)?,
            title: parse("head title")?,
            meta: parse("meta")?,
        })
    }
}

static SELECTORS: LazyLock<Result<Selectors, String>> = LazyLock::new(Selectors::parse);

/// Extracts the main content of an HTML page, or says why the page is skipped.
///
/// # Errors
/// Only if the built-in CSS selectors fail to parse, which is a bug.
pub(crate) fn extract_html(html: &str) -> Result<Extraction, IngestError> {
    let selectors = SELECTORS.as_ref().map_err(|reason| IngestError::Extract {
        reason: reason.clone(),
    })?;
    let page = Html::parse_document(html);

    if let Some(reason) = skip_reason(&page, selectors) {
        return Ok(Extraction::Skipped { reason });
    }

    let root = main_content(&page, selectors);
    let removed: HashSet<NodeId> = root.select(&selectors.removed).map(|e| e.id()).collect();
    let blocks = Renderer::new(&removed).run(*root);
    let (text, anchors) = render(&blocks);

    let title = page
        .select(&selectors.title)
        .map(|title| inline_text(*title, &removed))
        .find(|title| !title.is_empty())
        .or_else(|| first_heading(&blocks));
    Ok(Extraction::Content(ExtractedDocument {
        kind: DocumentKind::Html,
        title,
        text,
        anchors,
    }))
}

/// Why a page should not be indexed: it asks not to be (mdBook's `print.html`,
/// the whole book again on one page), or it only redirects elsewhere.
fn skip_reason(page: &Html, selectors: &Selectors) -> Option<String> {
    for meta in page.select(&selectors.meta) {
        let attr = |name: &str| meta.value().attr(name).unwrap_or_default();
        let content = attr("content").to_ascii_lowercase();

        let robots = attr("name").eq_ignore_ascii_case("robots");
        let noindex = content
            .split(',')
            .any(|d| matches!(d.trim(), "noindex" | "none"));
        if robots && noindex {
            return Some("the page asks not to be indexed (meta robots noindex)".into());
        }

        let refresh = attr("http-equiv").eq_ignore_ascii_case("refresh");
        if let Some(target) = refresh.then(|| redirect_target(attr("content"))).flatten() {
            return Some(format!("the page redirects to {target} (meta refresh)"));
        }
    }
    None
}

/// The URL of a `<meta http-equiv="refresh" content="0; url=…">`; none for a
/// refresh that only reloads the page.
fn redirect_target(content: &str) -> Option<String> {
    let start = content.to_ascii_lowercase().find("url")?;
    let rest = content[start + 3..].trim_start().strip_prefix('=')?;
    let target = rest.trim().trim_matches(['"', '\'']).trim();
    (!target.is_empty()).then(|| target.to_owned())
}

fn main_content<'a>(page: &'a Html, selectors: &Selectors) -> ElementRef<'a> {
    selectors
        .main
        .iter()
        .find_map(|selector| page.select(selector).next())
        .or_else(|| {
            let body = Selector::parse("body").ok()?;
            page.select(&body).next()
        })
        .unwrap_or_else(|| page.root_element())
}

/// One block of the extracted text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Heading {
        level: usize,
        text: String,
        anchor: Option<String>,
    },
    /// A paragraph; `indent` is non-zero for a list item's later paragraphs.
    Paragraph {
        indent: usize,
        text: String,
    },
    /// The first paragraph of a list item, nested `depth` lists deep (from 1).
    Item {
        depth: usize,
        text: String,
    },
    Code {
        language: String,
        code: String,
    },
    Row(Vec<String>),
}

impl Block {
    fn is_list(&self) -> bool {
        matches!(
            self,
            Self::Item { .. } | Self::Paragraph { indent: 1.., .. }
        )
    }

    fn write(&self, out: &mut String) {
        match self {
            Self::Heading { level, text, .. } => {
                out.push_str(&"#".repeat(*level));
                out.push(' ');
                out.push_str(text);
            }
            Self::Paragraph { indent, text } => write_lines(out, text, "", *indent),
            Self::Item { depth, text } => {
                let depth = (*depth).min(MAX_INDENTED_LISTS);
                let marker = format!("{}- ", "  ".repeat(depth.saturating_sub(1)));
                write_lines(out, text, &marker, depth * 2);
            }
            Self::Code { language, code } => {
                let fence = code_fence(code);
                let _ = write!(out, "{fence}{language}\n{code}\n{fence}");
            }
            Self::Row(cells) => write_lines(out, &cells.join(" | "), "", 0),
        }
    }
}

/// Writes the lines of `text`, the first after `marker`, the others indented.
///
/// A line that Markdown would read as a heading, a code fence or an HTML block
/// gets a backslash first, so that the structure seen by the chunker is only
/// the structure this module wrote.
fn write_lines(out: &mut String, text: &str, marker: &str, indent: usize) {
    for (index, line) in text.lines().enumerate() {
        if index == 0 {
            out.push_str(marker);
        } else {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
        }
        let structural = ["#", "<", "```", "~~~"].iter().any(|p| line.starts_with(p));
        if structural {
            out.push('\\');
        }
        out.push_str(line);
    }
}

/// A backtick fence longer than any run of backticks in the code.
fn code_fence(code: &str) -> String {
    let longest_run = code
        .split(|c| c != '`')
        .map(str::len)
        .max()
        .unwrap_or_default();
    "`".repeat((longest_run + 1).max(3))
}

/// Writes the blocks out; returns the text and the byte offsets of anchored
/// headings in it.
fn render(blocks: &[Block]) -> (String, Vec<(usize, String)>) {
    let mut text = String::new();
    let mut anchors = Vec::new();

    for (index, block) in blocks.iter().enumerate() {
        if let Some(previous) = index.checked_sub(1).map(|i| &blocks[i]) {
            let tight = (previous.is_list() && block.is_list())
                || (matches!(previous, Block::Row(_)) && matches!(block, Block::Row(_)));
            text.push_str(if tight { "\n" } else { "\n\n" });
        }
        if let Block::Heading {
            anchor: Some(anchor),
            ..
        } = block
        {
            anchors.push((text.len(), anchor.clone()));
        }
        block.write(&mut text);
    }
    if !text.is_empty() {
        text.push('\n');
    }
    (text, anchors)
}

fn first_heading(blocks: &[Block]) -> Option<String> {
    blocks.iter().find_map(|block| match block {
        Block::Heading { text, .. } => Some(text.clone()),
        _ => None,
    })
}

/// Inline text with HTML's whitespace collapsing: runs of whitespace become one
/// space, none at the start of a line.
#[derive(Debug, Default)]
struct Inline {
    text: String,
    pending_space: bool,
}

impl Inline {
    fn push_text(&mut self, text: &str) {
        for c in text.chars() {
            if c.is_whitespace() {
                self.pending_space = true;
            } else {
                self.push_char(c);
            }
        }
    }

    /// Pushes `word` as it is, after a collapsed space if one is pending.
    fn push_word(&mut self, word: &str) {
        word.chars().for_each(|c| self.push_char(c));
    }

    fn push_char(&mut self, c: char) {
        let after_text = !self.text.is_empty() && !self.text.ends_with('\n');
        if self.pending_space && after_text {
            self.text.push(' ');
        }
        self.pending_space = false;
        self.text.push(c);
    }

    fn line_break(&mut self) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.pending_space = false;
    }

    /// The collected lines, trimmed, without empty ones.
    fn take(&mut self) -> String {
        let text = std::mem::take(&mut self.text);
        self.pending_space = false;
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines.join("\n")
    }
}

/// Whether the walk goes into an element's children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Visit {
    Children,
    SkipChildren,
}

/// Walks the main content and collects its blocks.
struct Renderer<'a> {
    removed: &'a HashSet<NodeId>,
    blocks: Vec<Block>,
    inline: Inline,
    /// One entry per open `li`: whether its first paragraph was written.
    items: Vec<bool>,
}

impl<'a> Renderer<'a> {
    fn new(removed: &'a HashSet<NodeId>) -> Self {
        Self {
            removed,
            blocks: Vec::new(),
            inline: Inline::default(),
            items: Vec::new(),
        }
    }

    fn run(mut self, root: NodeRef<'_, Node>) -> Vec<Block> {
        let mut skipping: Option<NodeId> = None;
        for edge in root.traverse() {
            match edge {
                Edge::Open(node) if skipping.is_none() => {
                    if self.open(node) == Visit::SkipChildren {
                        skipping = Some(node.id());
                    }
                }
                Edge::Close(node) if skipping == Some(node.id()) => skipping = None,
                Edge::Close(node) if skipping.is_none() => self.close(node),
                Edge::Open(_) | Edge::Close(_) => {}
            }
        }
        self.flush();
        self.blocks
    }

    fn open(&mut self, node: NodeRef<'_, Node>) -> Visit {
        let element = match node.value() {
            Node::Text(text) => {
                self.inline.push_text(text);
                return Visit::Children;
            }
            Node::Element(element) => element,
            _ => return Visit::Children,
        };
        if self.removed.contains(&node.id()) || NEVER_TEXT.contains(&element.name()) {
            return Visit::SkipChildren;
        }

        match element.name() {
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => self.heading(node, element.name()),
            "pre" => self.code_block(node),
            "tr" => self.table_row(node),
            "code" => self.inline_code(node),
            "br" => self.inline.line_break(),
            "li" => {
                self.flush();
                self.items.push(false);
                return Visit::Children;
            }
            name if BLOCKS.contains(&name) => {
                self.flush();
                return Visit::Children;
            }
            _ => return Visit::Children,
        }
        Visit::SkipChildren
    }

    fn close(&mut self, node: NodeRef<'_, Node>) {
        let Node::Element(element) = node.value() else {
            return;
        };
        if element.name() == "li" {
            self.flush();
            self.items.pop();
        } else if BLOCKS.contains(&element.name()) {
            self.flush();
        }
    }

    /// Ends the current paragraph, if it has text.
    fn flush(&mut self) {
        let text = self.inline.take();
        if text.is_empty() {
            return;
        }
        let depth = self.items.len();
        let block = match self.items.last_mut() {
            Some(started @ false) => {
                *started = true;
                Block::Item { depth, text }
            }
            _ => Block::Paragraph {
                indent: depth.min(MAX_INDENTED_LISTS) * 2,
                text,
            },
        };
        self.blocks.push(block);
    }

    fn heading(&mut self, node: NodeRef<'_, Node>, name: &str) {
        self.flush();
        let text = heading_text(node, self.removed);
        if text.is_empty() {
            return;
        }
        let level = name[1..].parse().unwrap_or(1);
        let anchor = heading_anchor(node);
        self.blocks.push(Block::Heading {
            level,
            text,
            anchor,
        });
    }

    fn code_block(&mut self, node: NodeRef<'_, Node>) {
        self.flush();
        let code = raw_text(node, self.removed);
        let code = code.trim_end().trim_start_matches('\n');
        if code.trim().is_empty() {
            return;
        }
        self.blocks.push(Block::Code {
            language: code_language(node),
            code: code.to_owned(),
        });
    }

    fn table_row(&mut self, node: NodeRef<'_, Node>) {
        self.flush();
        let cells: Vec<String> = node
            .children()
            .filter(|child| {
                let name = child.value().as_element().map(|e| e.name());
                matches!(name, Some("td" | "th"))
            })
            .map(|cell| inline_text(cell, self.removed))
            .collect();
        if cells.iter().any(|cell| !cell.is_empty()) {
            self.blocks.push(Block::Row(cells));
        }
    }

    fn inline_code(&mut self, node: NodeRef<'_, Node>) {
        let code = inline_text(node, self.removed);
        if code.is_empty() {
            return;
        }
        if code.contains('`') {
            self.inline.push_word(&code);
        } else {
            self.inline.push_word(&format!("`{code}`"));
        }
    }
}

/// The text of a subtree with whitespace collapsed to single spaces and no
/// line breaks: for headings, table cells, titles and inline code.
fn inline_text(root: NodeRef<'_, Node>, removed: &HashSet<NodeId>) -> String {
    let mut inline = Inline::default();
    visit_text(root, removed, |piece| match piece {
        TextPiece::Text(text) => inline.push_text(text),
        TextPiece::Break => inline.pending_space = true,
    });
    inline.take().replace('\n', " ")
}

/// The text of a heading, with inline code kept as Markdown code spans so that
/// `Mutex<T>` in a heading is not read back as an HTML tag.
fn heading_text(root: NodeRef<'_, Node>, removed: &HashSet<NodeId>) -> String {
    let mut text = String::new();
    for child in root.children() {
        match child.value() {
            Node::Text(part) => text.push_str(part),
            Node::Element(element) => {
                let hidden = NEVER_TEXT.contains(&element.name()) || removed.contains(&child.id());
                if hidden {
                    continue;
                }
                let inner = heading_text(child, removed);
                if element.name() == "code" && !inner.contains('`') && !inner.trim().is_empty() {
                    text.push_str(&format!("`{}`", inner.trim()));
                } else {
                    text.push_str(&inner);
                }
            }
            _ => {}
        }
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of a subtree exactly as written, `<br>` as a line break: for `pre`.
fn raw_text(root: NodeRef<'_, Node>, removed: &HashSet<NodeId>) -> String {
    let mut out = String::new();
    visit_text(root, removed, |piece| match piece {
        TextPiece::Text(text) => out.push_str(text),
        TextPiece::Break => out.push('\n'),
    });
    out
}

enum TextPiece<'a> {
    Text(&'a str),
    /// A `<br>` or the start of a block element.
    Break,
}

/// Calls `visit` with each text node under `root` and a break for each `<br>` or
/// block, leaving out removed and never-text subtrees.
fn visit_text<'a>(
    root: NodeRef<'a, Node>,
    removed: &HashSet<NodeId>,
    mut visit: impl FnMut(TextPiece<'a>),
) {
    let mut skipping: Option<NodeId> = None;
    for edge in root.traverse() {
        let node = match edge {
            Edge::Open(node) if skipping.is_none() => node,
            Edge::Close(node) if skipping == Some(node.id()) => {
                skipping = None;
                continue;
            }
            _ => continue,
        };
        match node.value() {
            Node::Text(text) => visit(TextPiece::Text(text)),
            Node::Element(element) => {
                let hidden = NEVER_TEXT.contains(&element.name()) || removed.contains(&node.id());
                if hidden && node.id() != root.id() {
                    skipping = Some(node.id());
                } else if element.name() == "br" || BLOCKS.contains(&element.name()) {
                    visit(TextPiece::Break);
                }
            }
            _ => {}
        }
    }
}

/// The fragment id of a heading: its own `id`, else that of an element inside it
/// (mdBook's `<a class="header" id="…">`), else an `<a name="…">` inside it.
fn heading_anchor(node: NodeRef<'_, Node>) -> Option<String> {
    node.descendants()
        .filter_map(ElementRef::wrap)
        .find_map(|element| {
            let element = element.value();
            let named = (element.name() == "a")
                .then(|| element.attr("name"))
                .flatten();
            element.id().or(named).filter(|id| !id.is_empty())
        })
        .map(str::to_owned)
}

/// The language of a `pre` block from a `language-…` or `lang-…` class on it or
/// on a `code` inside it.
fn code_language(node: NodeRef<'_, Node>) -> String {
    node.descendants()
        .filter_map(ElementRef::wrap)
        .take(2)
        .flat_map(|element| element.value().classes())
        .find_map(|class| {
            class
                .strip_prefix("language-")
                .or_else(|| class.strip_prefix("lang-"))
        })
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_code_in_headings_survives_as_a_code_span() {
        let html = "<main><h4 id=\"m\"><a class=\"header\" href=\"#m\">Shared Access to \
                    <code>Mutex&lt;T&gt;</code></a></h4><p>Text.</p></main>";
        let document = content(html);
        assert!(
            document
                .text
                .starts_with("#### Shared Access to `Mutex<T>`"),
            "{}",
            document.text
        );
    }

    fn content(html: &str) -> ExtractedDocument {
        match extract_html(html).unwrap() {
            Extraction::Content(document) => document,
            Extraction::Skipped { reason } => panic!("skipped: {reason}"),
        }
    }

    fn skipped(html: &str) -> String {
        match extract_html(html).unwrap() {
            Extraction::Skipped { reason } => reason,
            Extraction::Content(document) => panic!("not skipped: {:?}", document.text),
        }
    }

    #[test]
    fn main_content_becomes_markdown_like_text() {
        let html = r##"<html><head><title> A   Page </title><script>var x;</script></head>
            <body><nav>Menu</nav><div class="sidebar">TOC</div>
            <main><h1 id="intro"><a class="header" href="#intro">Intro</a></h1>
            <p>Some   <em>inline</em>
               text with a <a href="x">link</a> and <code>code()</code>.</p>
            <h2><a class="header" id="sub" href="#sub">Sub &amp; more</a></h2>
            <ul><li>one</li><li><p>two</p><ul><li>nested</li></ul></li></ul>
            <pre><code class="language-rust">fn main() {
    # not a heading
}</code></pre>
            <table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2 <br> 3</td></tr></table>
            <button>Copy</button><footer>foot</footer>
            </main></body></html>"##;
        let document = content(html);

        let expected = "# Intro\n\n\
            Some inline text with a link and `code()`.\n\n\
            ## Sub & more\n\n\
            - one\n- two\n  - nested\n\n\
            ```rust\nfn main() {\n    # not a heading\n}\n```\n\n\
            a | b\n1 | 2 3\n";
        assert_eq!(document.text, expected);
        assert_eq!(document.title.as_deref(), Some("A Page"));
        let intro = document.text.find("# Intro").unwrap();
        let sub = document.text.find("## Sub").unwrap();
        assert_eq!(
            document.anchors,
            [(intro, "intro".into()), (sub, "sub".into())]
        );
    }

    #[test]
    fn body_is_the_fallback_and_furniture_is_removed_there_too() {
        let html = "<body><header>Site</header><p>Body text</p><aside>ad</aside></body>";
        let document = content(html);
        assert_eq!(document.text, "Body text\n");
        assert_eq!(document.title, None);
    }

    #[test]
    fn article_and_role_main_are_main_content() {
        let html = "<body><p>outside</p><article><p>inside</p></article></body>";
        assert_eq!(content(html).text, "inside\n");
        let html = "<body><p>outside</p><div role=main><p>inside</p></div></body>";
        assert_eq!(content(html).text, "inside\n");
    }

    #[test]
    fn noindex_and_redirect_pages_are_skipped() {
        let html = r#"<head><meta name="robots" content="noindex"></head><body>book</body>"#;
        assert!(skipped(html).contains("noindex"));

        let html = r#"<head><meta http-equiv="Refresh" content="0; URL='../new.html'"></head>"#;
        assert!(skipped(html).contains("../new.html"), "{}", skipped(html));

        let reload = r#"<head><meta http-equiv="refresh" content="30"></head><p>live</p>"#;
        assert_eq!(content(reload).text, "live\n");
    }

    #[test]
    fn text_that_looks_like_markdown_structure_is_escaped() {
        let html = "<p># of users</p><p>&lt;script&gt; tags</p><p>```</p>";
        assert_eq!(
            content(html).text,
            "\\# of users\n\n\\<script> tags\n\n\\```\n"
        );
    }

    #[test]
    fn code_fences_outgrow_backticks_in_the_code() {
        assert_eq!(code_fence("let s = ```;"), "````");
        assert_eq!(code_fence("plain"), "```");
    }

    #[test]
    fn deep_nesting_and_odd_markup_do_not_panic() {
        let deep = "<div>".repeat(20_000) + "deep text" + &"</div>".repeat(20_000);
        assert_eq!(content(&deep).text, "deep text\n");

        let lists = "<ul><li>item".repeat(5_000);
        let text = content(&lists).text;
        assert_eq!(text.lines().count(), 5_000);
        assert!(text.len() < 5_000 * 32, "indentation grew with depth");

        for html in [
            "",
            "   ",
            "<",
            "<h1></h1>",
            "<pre></pre>",
            "<table><tr></tr></table>",
        ] {
            let _ = extract_html(html).unwrap();
        }
    }
}
