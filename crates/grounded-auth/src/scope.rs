//! What a caller may do: the four scopes, and a small set of them.
//!
//! Scopes are independent of each other: `admin` (managing keys, reading
//! usage and the audit log) does not imply `search`, and `answer` does not
//! imply `search`. A key that should do everything lists every scope.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::error::ScopeError;

/// One right a principal can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `POST /v1/search`: hits for a query.
    Search,
    /// `POST /v1/answer`: a cited answer, which spends chat model tokens.
    Answer,
    /// Uploading and deleting documents.
    Ingest,
    /// Managing keys, reading usage, the audit log and the prompt log.
    Admin,
}

impl Scope {
    /// Every scope, in the order they are displayed.
    pub const ALL: [Scope; 4] = [Scope::Search, Scope::Answer, Scope::Ingest, Scope::Admin];

    /// The lowercase name, as in key records and token claims.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Search => "search",
            Scope::Answer => "answer",
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    /// Parses a lowercase scope name, ignoring surrounding whitespace;
    /// `Search` is refused.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let name = name.trim();
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == name)
            .ok_or_else(|| ScopeError {
                name: name.to_owned(),
            })
    }
}

/// A set of scopes.
///
/// Parses from and displays as a comma-separated list (`search,answer`);
/// empty items are skipped, so `""` is the empty set.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Scopes(u8);

impl Scopes {
    /// No scope at all.
    pub const fn empty() -> Self {
        Scopes(0)
    }

    /// Every scope.
    pub fn all() -> Self {
        Scope::ALL.into_iter().collect()
    }

    /// Whether `scope` is in the set.
    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    /// Adds `scope` to the set.
    pub fn insert(&mut self, scope: Scope) {
        self.0 |= scope.bit();
    }

    /// Whether the set holds no scope.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The scopes in the set, in display order.
    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .into_iter()
            .filter(move |scope| self.contains(*scope))
    }

    /// The names sorted alphabetically, as an API key record stores them.
    pub fn to_sorted_names(self) -> Vec<String> {
        let mut names: Vec<String> = self.iter().map(|scope| scope.as_str().to_owned()).collect();
        names.sort();
        names
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut scopes = Scopes::empty();
        for scope in iter {
            scopes.insert(scope);
        }
        scopes
    }
}

impl FromStr for Scopes {
    type Err = ScopeError;

    /// Parses `search,answer`; the error names the first unknown scope.
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        list.split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(Scope::from_str)
            .collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(scope.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_round_trip() {
        for scope in Scope::ALL {
            assert_eq!(scope.to_string().parse::<Scope>(), Ok(scope));
        }
        assert_eq!(" admin ".parse::<Scope>(), Ok(Scope::Admin));
    }

    #[test]
    fn scope_names_are_case_sensitive() {
        assert!("Search".parse::<Scope>().is_err());
    }

    #[test]
    fn scopes_parse_a_list() {
        let scopes: Scopes = "search, answer,".parse().unwrap();

        assert!(scopes.contains(Scope::Search));
        assert!(scopes.contains(Scope::Answer));
        assert!(!scopes.contains(Scope::Ingest));
        assert!(!scopes.contains(Scope::Admin));
        assert_eq!(scopes.to_string(), "search,answer");
    }

    #[test]
    fn scopes_error_names_the_bad_scope() {
        let error = "search,delete,answer".parse::<Scopes>().unwrap_err();

        assert_eq!(error.name, "delete");
        assert!(error.to_string().contains("\"delete\""));
    }

    #[test]
    fn empty_list_is_the_empty_set() {
        let scopes: Scopes = "".parse().unwrap();

        assert!(scopes.is_empty());
        assert_eq!(scopes.to_string(), "");
    }

    #[test]
    fn sorted_names_are_alphabetical() {
        assert_eq!(
            Scopes::all().to_sorted_names(),
            ["admin", "answer", "ingest", "search"]
        );
    }
}
