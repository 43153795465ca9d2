//! Throwaway Postgres databases, for tests and benchmarks that must run
//! against a real server without touching anyone's data.

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use crate::StoreError;

/// The variable that names a Postgres server for tests, as the URL of a
/// database that the tests may connect to in order to create others.
pub const TEST_DATABASE_URL_VAR: &str = "GROUNDED_TEST_DATABASE_URL";

/// Set (to anything) where a missing test server is a failure, not a skip.
pub const REQUIRE_POSTGRES_VAR: &str = "GROUNDED_REQUIRE_POSTGRES";

/// The server URL for tests, or `None` after saying why the caller skips.
///
/// # Panics
/// When the server is not named but [`REQUIRE_POSTGRES_VAR`] is set, as in CI.
pub fn test_server_url(test: &str) -> Option<String> {
    if let Ok(url) = std::env::var(TEST_DATABASE_URL_VAR)
        && !url.is_empty()
    {
        return Some(url);
    }
    if std::env::var_os(REQUIRE_POSTGRES_VAR).is_some() {
        panic!("{test}: {TEST_DATABASE_URL_VAR} is not set but {REQUIRE_POSTGRES_VAR} is");
    }
    eprintln!("skipped {test}: {TEST_DATABASE_URL_VAR} is not set (no Postgres server to test)");
    None
}

/// A database created empty on a server and dropped with the value.
pub struct ScratchDatabase {
    server: PgConnectOptions,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates a database with a fresh name on the server of `server_url`.
    ///
    /// # Errors
    /// When the server cannot be reached or refuses to create a database.
    pub async fn create(server_url: &str) -> Result<Self, StoreError> {
        let server = PgConnectOptions::from_str(server_url)?;
        let name = format!("grounded_scratch_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect_with(&server).await?;
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        admin.close().await?;

        let url = with_database(server_url, &name);
        Ok(Self { server, name, url })
    }

    /// The URL of the scratch database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of the scratch database.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs one SQL statement in the scratch database.
    ///
    /// # Errors
    /// When the connection or the statement fails.
    pub async fn execute(&self, sql: &str) -> Result<(), StoreError> {
        let mut connection = PgConnection::connect(&self.url).await?;
        connection.execute(sql).await?;
        connection.close().await?;
        Ok(())
    }

    /// Records migration `version` as applied, as a newer build of grounded
    /// would leave the database; the database must be migrated already.
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn record_newer_migration(&self, version: i64) -> Result<(), StoreError> {
        let sql = format!(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES ({version}, 'from a newer build', true, '\\x00', 0)"
        );
        self.execute(&sql).await
    }
}

/// `url` with its database (the path) replaced by `name`, its parameters kept.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |at| at + 3);
    let base = match base[authority..].find('/') {
        Some(slash) => &base[..authority + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for ScratchDatabase {
    /// Drops the database, ending sessions still connected to it; a failure
    /// leaves a `grounded_scratch_*` database behind and is only reported.
    fn drop(&mut self) {
        let server = self.server.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|err| err.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect_with(&server)
                    .await
                    .map_err(|err| err.to_string())?;
                admin
                    .execute(statement.as_str())
                    .await
                    .map_err(|err| err.to_string())?;
                admin.close().await.map_err(|err| err.to_string())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("failed to drop scratch database {}: {error}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_scratch_url_keeps_the_server_and_its_parameters() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres", "s"),
            "postgres://u@h:5432/s"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=require", "s"),
            "postgres://u:p@h/s?sslmode=require"
        );
        assert_eq!(
            with_database("postgres://h:5432", "s"),
            "postgres://h:5432/s"
        );
    }
}
