//! `grounded collections list|delete`.

use std::collections::BTreeSet;

use grounded_index::VectorIndex;
use grounded_store::MetadataStore;
use serde::Serialize;

use crate::cli::{CollectionsCommand, GlobalArgs};
use crate::context::{collection_name, open_index, open_metadata_store};

/// What one collection holds, in the store and in the index.
#[derive(Debug, Serialize)]
struct CollectionSummary {
    name: String,
    ready_documents: u64,
    indexing_documents: u64,
    chunks: u64,
    /// `None` when the index has no such collection.
    points: Option<usize>,
}

pub async fn run(global: &GlobalArgs, command: CollectionsCommand) -> anyhow::Result<()> {
    let store = open_metadata_store(global).await?;
    let (index, _) = open_index(global).await?;
    let result = match command {
        CollectionsCommand::List { json } => list(store.as_ref(), index.as_ref(), json).await,
        CollectionsCommand::Delete { name } => delete(store.as_ref(), index.as_ref(), &name).await,
    };
    store.close().await;
    result
}

async fn list(
    store: &dyn MetadataStore,
    index: &dyn VectorIndex,
    json: bool,
) -> anyhow::Result<()> {
    let summaries = summaries(store, index).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summaries)?);
        return Ok(());
    }
    if summaries.is_empty() {
        println!("no collections in {}", store.location());
    }
    for summary in &summaries {
        let points = summary
            .points
            .map_or_else(|| "no index".to_string(), |p| format!("{p} points"));
        println!(
            "{}: {} documents ({} being indexed), {} chunks, {points}",
            summary.name, summary.ready_documents, summary.indexing_documents, summary.chunks
        );
    }
    Ok(())
}

/// Every collection that the store or the index knows, sorted by name.
async fn summaries(
    store: &dyn MetadataStore,
    index: &dyn VectorIndex,
) -> anyhow::Result<Vec<CollectionSummary>> {
    let in_index: BTreeSet<String> = index.list_collections().await?.into_iter().collect();
    let mut names: BTreeSet<String> = store.collections().await?.into_iter().collect();
    names.extend(in_index.iter().cloned());

    let mut summaries = Vec::with_capacity(names.len());
    for name in names {
        let counts = store.collection_counts(&name).await?;
        let points = match in_index.contains(&name) {
            true => Some(index.count(&name).await?),
            false => None,
        };
        summaries.push(CollectionSummary {
            name,
            ready_documents: counts.ready_documents,
            indexing_documents: counts.indexing_documents,
            chunks: counts.chunks,
            points,
        });
    }
    Ok(summaries)
}

/// Deletes the store's record first, so that the points become invisible at
/// once; a run killed before the index is deleted leaves only invisible
/// points, which deleting again removes.
async fn delete(
    store: &dyn MetadataStore,
    index: &dyn VectorIndex,
    name: &str,
) -> anyhow::Result<()> {
    let name = collection_name(name)?;
    let summary = summaries(store, index)
        .await?
        .into_iter()
        .find(|summary| summary.name == name);
    let Some(summary) = summary else {
        anyhow::bail!("there is no collection {name:?}; `grounded collections list` shows them");
    };

    store.delete_collection(name).await?;
    index.delete_collection(name).await?;
    println!(
        "deleted collection {name:?}: {} documents, {} chunks, {} points",
        summary.ready_documents + summary.indexing_documents,
        summary.chunks,
        summary.points.unwrap_or(0)
    );
    Ok(())
}
