//! `grounded migrate`: bring the metadata store's schema up to date.

use crate::cli::GlobalArgs;
use crate::context::open_metadata_store;

pub async fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    let store = open_metadata_store(global).await?;
    println!(
        "database {} is at schema version {}",
        store.location(),
        store.schema_version()
    );
    store.close().await;
    Ok(())
}
