//! Search filters, as grounded means them; each backend translates a
//! [`PointFilter`] into its own conditions.
//!
//! Every condition of a filter must hold. Within one condition: a point
//! passes a list of kinds if it is any of them, and a list of tags only if it
//! has all of them. A field condition names a payload path (`title`,
//! `location.anchor`) and a value; the value matches a string field equal to
//! it, and also an integer or boolean field when it reads as one. A field
//! that a point lacks fails the condition, so a filter on a field that no
//! point has returns no hits.

use std::path::{Component, Path};

use grounded_core::DocumentKind;

/// Conditions a hit's payload must meet; the default lets everything through.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointFilter {
    /// A directory or file; only chunks of files at or under it pass. Matched
    /// by whole path components: `docs` passes `docs/a.md`, not `docs2/a.md`.
    pub path_prefix: Option<String>,
    /// Document kinds, any of which passes; empty lets every kind through.
    pub kinds: Vec<DocumentKind>,
    /// Tags the document must all carry.
    pub tags: Vec<String>,
    /// Payload fields that must equal a value.
    pub fields: Vec<FieldMatch>,
}

impl PointFilter {
    pub fn is_empty(&self) -> bool {
        self.normalized_path_prefix().is_none()
            && self.kinds.is_empty()
            && self.tags.is_empty()
            && self.fields.is_empty()
    }

    /// The path prefix in the form [`path_prefixes`] stores it; `None` when
    /// there is none or it names no component (`/`, `.`), which every path
    /// passes.
    pub fn normalized_path_prefix(&self) -> Option<String> {
        let prefix = self.path_prefix.as_deref()?;
        path_prefixes(prefix).pop()
    }
}

/// One `key=value` condition on a payload field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldMatch {
    pub key: String,
    pub value: String,
}

impl FieldMatch {
    /// Reads `key=value`; the first `=` separates them and the value may be empty.
    ///
    /// # Errors
    /// A message naming the text when it has no `=` or no key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((key, value)) = text.split_once('=') else {
            return Err(format!("{text:?} is not KEY=VALUE"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{text:?} has no field name before '='"));
        }
        Ok(Self {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }

    /// The value as an integer, if it reads as one.
    pub fn integer(&self) -> Option<i64> {
        self.value.parse().ok()
    }

    /// The value as a boolean, if it is `true` or `false`.
    pub fn boolean(&self) -> Option<bool> {
        self.value.parse().ok()
    }
}

/// A source path followed by every directory above it, outermost first and
/// the path itself last: `docs/guide/a.md` gives `docs`, `docs/guide`,
/// `docs/guide/a.md`. `.` components and trailing slashes are dropped, so
/// `./docs/` and `docs` are the same prefix; an absolute path keeps its `/`.
pub fn path_prefixes(source_path: &str) -> Vec<String> {
    let mut prefixes = Vec::new();
    let mut current = String::new();
    for component in Path::new(source_path).components() {
        match component {
            Component::RootDir => current.push('/'),
            Component::Normal(name) => {
                if !current.is_empty() && !current.ends_with('/') {
                    current.push('/');
                }
                current.push_str(&name.to_string_lossy());
                prefixes.push(current.clone());
            }
            Component::ParentDir => {
                if !current.is_empty() && !current.ends_with('/') {
                    current.push('/');
                }
                current.push_str("..");
                prefixes.push(current.clone());
            }
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
    prefixes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_whole_components() {
        assert_eq!(
            path_prefixes("./docs/guide/a.md"),
            ["docs", "docs/guide", "docs/guide/a.md"]
        );
        assert_eq!(path_prefixes("/srv/a.md"), ["/srv", "/srv/a.md"]);
        assert_eq!(path_prefixes("../up/a.md"), ["..", "../up", "../up/a.md"]);
        let filter = PointFilter {
            path_prefix: Some("./docs/guide/".to_owned()),
            ..PointFilter::default()
        };
        assert_eq!(
            filter.normalized_path_prefix().as_deref(),
            Some("docs/guide")
        );
    }

    #[test]
    fn field_matches_split_at_the_first_equals_sign() {
        let field = FieldMatch::parse("title=a=b").expect("parsed");
        assert_eq!((field.key.as_str(), field.value.as_str()), ("title", "a=b"));
        assert_eq!(
            FieldMatch::parse("ordinal=3").expect("parsed").integer(),
            Some(3)
        );
        assert!(FieldMatch::parse("title").is_err());
        assert!(FieldMatch::parse("=x").is_err());
    }
}
