use grounded_embed::EmbedError;

/// Errors of metadata store backends.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to open database {location}: {source}")]
    Open {
        location: String,
        source: sqlx::Error,
    },

    #[error("failed to migrate database {location}: {source}")]
    Migrate {
        location: String,
        source: sqlx::migrate::MigrateError,
    },

    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),

    #[error("database holds a malformed value in {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
}

impl From<StoreError> for EmbedError {
    fn from(error: StoreError) -> Self {
        EmbedError::Cache(error.to_string())
    }
}
