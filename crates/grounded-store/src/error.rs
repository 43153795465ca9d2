use grounded_embed::EmbedError;
use sqlx::migrate::{MigrateError, Migrator};

/// Errors of metadata store backends.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported database URL {url}: use postgres://USER@HOST:PORT/DATABASE or \
         sqlite://PATH"
    )]
    UnsupportedUrl { url: String },

    #[error("database URL {location} names no database: use postgres://USER@HOST:PORT/DATABASE")]
    NoDatabaseName { location: String },

    #[error("failed to open database {location}: {source}")]
    Open {
        location: String,
        source: sqlx::Error,
    },

    #[error("failed to open database {location}: directory {directory} does not exist")]
    MissingDirectory { location: String, directory: String },

    #[error("failed to open database {location}: no answer within {seconds} s")]
    ConnectTimeout { location: String, seconds: u64 },

    #[error(
        "database {location} has schema version {found}, newer than the {known} this build of \
         grounded knows: use a newer grounded, or another database"
    )]
    NewerSchema {
        location: String,
        found: i64,
        known: i64,
    },

    #[error(
        "database {location} was migrated with a different migration {version} than this \
         build of grounded has: it belongs to another build or another program"
    )]
    ChangedSchema { location: String, version: i64 },

    #[error("failed to migrate database {location}: {source}")]
    Migrate {
        location: String,
        source: MigrateError,
    },

    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),

    /// A record with this identity exists already: an id was taken twice.
    #[error("{what} already exists")]
    Conflict { what: String },

    /// A count or limit beyond what the database stores (2^63 - 1).
    #[error("{value} is too large to store in {column}")]
    OutOfRange { column: &'static str, value: u64 },

    #[error("database holds a malformed value in {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },

    #[error("failed to lock {path}: {source}")]
    Lock {
        path: String,
        source: std::io::Error,
    },
}

impl From<StoreError> for EmbedError {
    fn from(error: StoreError) -> Self {
        EmbedError::Cache(error.to_string())
    }
}

/// The newest migration `migrator` knows: the schema version it migrates to.
pub(crate) fn latest_version(migrator: &Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Runs `migrator`, naming a database of another schema as such.
pub(crate) async fn migrate<'a, A>(
    migrator: &Migrator,
    database: A,
    location: &str,
) -> Result<(), StoreError>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let location = location.to_owned();
    match migrator.run(database).await {
        Ok(()) => Ok(()),
        Err(MigrateError::VersionMissing(found)) => Err(StoreError::NewerSchema {
            location,
            found,
            known: latest_version(migrator),
        }),
        Err(MigrateError::VersionMismatch(version)) => {
            Err(StoreError::ChangedSchema { location, version })
        }
        Err(source) => Err(StoreError::Migrate { location, source }),
    }
}
