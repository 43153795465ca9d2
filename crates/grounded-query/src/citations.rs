//! Citation markers in a model's text: `[n]` markers that name a source of
//! the prompt are kept, the others are removed, and the sources cited are
//! collected in the order they are first cited.
//!
//! The filter works on a stream of text pieces as well as on whole text, and
//! gives the same result however the text is split, so a streamed answer and
//! a whole one read alike. It holds back only what might still turn out to be
//! a marker: an opening `[` with the digits after it, and whitespace before it.

/// The longest text a marker may span, brackets included; a longer `[…` is
/// passed through as text.
const MAX_MARKER_LEN: usize = 24;

/// Filters citation markers out of text against `sources` numbered sources.
#[derive(Debug, Clone)]
pub struct CitationFilter {
    sources: usize,
    /// Whitespace seen but not yet emitted: it goes if the marker after it goes.
    pending_space: String,
    /// A `[` and what followed it, while it may still be a marker.
    marker: String,
    /// Set after a removed marker, until the next text decides what the
    /// whitespace around it becomes.
    after_removed: bool,
    cited: Vec<usize>,
    removed: usize,
}

impl CitationFilter {
    pub fn new(sources: usize) -> Self {
        Self {
            sources,
            pending_space: String::new(),
            marker: String::new(),
            after_removed: false,
            cited: Vec::new(),
            removed: 0,
        }
    }

    /// Feeds the next piece of text; returns the text that is settled.
    pub fn push(&mut self, piece: &str) -> String {
        let mut out = String::new();
        for c in piece.chars() {
            self.push_char(c, &mut out);
        }
        out
    }

    /// Ends the text; returns whatever was still held back.
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.pending_space);
        out.push_str(&std::mem::take(&mut self.marker));
        self.after_removed = false;
        out
    }

    /// The numbers of the sources cited, in order of first citation.
    pub fn cited(&self) -> &[usize] {
        &self.cited
    }

    /// How many markers were removed because they name no source.
    pub fn removed(&self) -> usize {
        self.removed
    }

    fn push_char(&mut self, c: char, out: &mut String) {
        if !self.marker.is_empty() {
            self.continue_marker(c, out);
            return;
        }
        match c {
            '[' => self.marker.push(c),
            c if c.is_whitespace() => {
                // Around a removed marker, one run of whitespace is enough.
                if !self.after_removed || self.pending_space.is_empty() {
                    self.pending_space.push(c);
                }
            }
            c => self.emit_text(c, out),
        }
    }

    fn continue_marker(&mut self, c: char, out: &mut String) {
        let may_continue = c.is_ascii_digit() || c == ',' || c == ' ';
        if may_continue && self.marker.len() < MAX_MARKER_LEN {
            self.marker.push(c);
            return;
        }
        if c == ']' {
            self.marker.push(c);
            self.close_marker(out);
            return;
        }

        // Not a marker after all: it is text, and `c` starts afresh.
        self.flush_as_text(out);
        self.push_char(c, out);
    }

    fn close_marker(&mut self, out: &mut String) {
        let marker = std::mem::take(&mut self.marker);
        let Some(numbers) = parse_marker(&marker) else {
            self.marker = marker;
            self.flush_as_text(out);
            return;
        };

        let valid: Vec<usize> = numbers
            .into_iter()
            .filter(|n| (1..=self.sources).contains(n))
            .collect();
        if valid.is_empty() {
            self.removed += 1;
            self.after_removed = true;
            return;
        }

        out.push_str(&std::mem::take(&mut self.pending_space));
        self.after_removed = false;
        for number in valid {
            out.push_str(&format!("[{number}]"));
            if !self.cited.contains(&number) {
                self.cited.push(number);
            }
        }
    }

    fn flush_as_text(&mut self, out: &mut String) {
        out.push_str(&std::mem::take(&mut self.pending_space));
        out.push_str(&std::mem::take(&mut self.marker));
        self.after_removed = false;
    }

    fn emit_text(&mut self, c: char, out: &mut String) {
        let space = std::mem::take(&mut self.pending_space);
        // "claim [9]." reads "claim.": no space before punctuation.
        let closes = matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | ')');
        if !(self.after_removed && closes) {
            out.push_str(&space);
        }
        self.after_removed = false;
        out.push(c);
    }
}

/// The numbers of a marker such as `[2]` or `[1, 3]`; `None` when it is
/// something else in brackets.
fn parse_marker(marker: &str) -> Option<Vec<usize>> {
    let inner = marker.strip_prefix('[')?.strip_suffix(']')?;
    inner
        .split(',')
        .map(|part| part.trim().parse::<usize>().ok())
        .collect()
}

/// Filters whole text; returns the text, the sources cited and how many
/// markers were removed.
pub fn filter_citations(text: &str, sources: usize) -> (String, Vec<usize>, usize) {
    let mut filter = CitationFilter::new(sources);
    let mut out = filter.push(text);
    out.push_str(&filter.finish());
    (out, filter.cited, filter.removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filtered(text: &str) -> (String, Vec<usize>, usize) {
        filter_citations(text, 3)
    }

    #[test]
    fn keeps_markers_of_real_sources_in_order_of_first_citation() {
        let (text, cited, removed) = filtered("Borrowing is safe [2]. Moves transfer [1][2].");
        assert_eq!(text, "Borrowing is safe [2]. Moves transfer [1][2].");
        assert_eq!(cited, [2, 1]);
        assert_eq!(removed, 0);
    }

    #[test]
    fn removes_markers_that_name_no_source_and_the_space_before_them() {
        let (text, cited, removed) = filtered("One [7]. Two [0] and [3], three [12] [1].");
        assert_eq!(text, "One. Two and [3], three [1].");
        assert_eq!(cited, [3, 1]);
        assert_eq!(removed, 3);
    }

    #[test]
    fn splits_a_list_marker_and_drops_its_invalid_numbers() {
        let (text, cited, _) = filtered("Both hold [1, 9, 3].");
        assert_eq!(text, "Both hold [1][3].");
        assert_eq!(cited, [1, 3]);
    }

    #[test]
    fn brackets_that_are_not_markers_stay_as_text() {
        let text = "Index with v[i] or [a, b], call f(x) [see below] and [ ] [].";
        let (out, cited, removed) = filtered(text);
        assert_eq!(out, text);
        assert!(cited.is_empty());
        assert_eq!(removed, 0);
    }

    #[test]
    fn any_split_of_the_text_gives_the_same_result() {
        let text = "Rust has owners [1]. Nothing here [5] , then [2][4] done  [3]\nend [";
        let whole = filtered(text);
        let chars: Vec<char> = text.chars().collect();
        for size in 1..6 {
            let mut filter = CitationFilter::new(3);
            let mut out = String::new();
            for piece in chars.chunks(size) {
                out.push_str(&filter.push(&piece.iter().collect::<String>()));
            }
            out.push_str(&filter.finish());
            assert_eq!(out, whole.0, "pieces of {size}");
            assert_eq!(filter.cited(), whole.1.as_slice());
        }
    }
}
