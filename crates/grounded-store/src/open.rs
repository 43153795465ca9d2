//! Choosing a backend by database URL.

use std::path::Path;

use crate::{MetadataStore, PostgresStore, SqliteStore, StoreError};

/// Opens the store at `url`: `postgres://…` (or `postgresql://…`) for
/// Postgres, `sqlite://PATH` (or `sqlite:PATH`) for a SQLite file.
///
/// # Errors
/// [`StoreError::UnsupportedUrl`] for any other scheme; otherwise what the
/// backend's `open` returns.
pub async fn open_store(url: &str) -> Result<Box<dyn MetadataStore>, StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(PostgresStore::open(url).await?));
    }
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = path.strip_prefix("//").unwrap_or(path);
        if !path.is_empty() {
            return Ok(Box::new(SqliteStore::open(Path::new(path)).await?));
        }
    }
    Err(StoreError::UnsupportedUrl {
        url: redact_url(url),
    })
}

/// The URL with its passwords, if any, replaced by `***`: the one before
/// `@` and any `…password=` parameter. Fit for messages and logs.
pub fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((url, query)) => (url, Some(redact_query(query))),
        None => (url, None),
    };
    let mut redacted = redact_userinfo(url);
    if let Some(query) = query {
        redacted.push('?');
        redacted.push_str(&query);
    }
    redacted
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().ends_with("password") => {
                format!("{key}=***")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out_of_urls() {
        assert_eq!(
            redact_url("postgres://app:s3cr%2Ft@db.internal:5432/grounded?sslmode=require"),
            "postgres://app:***@db.internal:5432/grounded?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app@db/grounded"),
            "postgres://app@db/grounded"
        );
        assert_eq!(
            redact_url("postgres://a:b@c@host/db"),
            "postgres://a:***@host/db"
        );
        assert_eq!(
            redact_url("postgres://app@db/g?sslmode=require&password=s3&sslpassword=k"),
            "postgres://app@db/g?sslmode=require&password=***&sslpassword=***"
        );
        assert_eq!(redact_url("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
