//! The SQLite store against a real SQLite database file.

use grounded_core::{
    Chunk, ChunkId, ChunkLocation, Document, DocumentId, DocumentKind, DocumentState, content_hash,
};
use grounded_embed::EmbeddingCache;
use grounded_store::{MetadataStore, SqliteStore};

fn document(path: &str) -> Document {
    Document {
        id: DocumentId::new("books", path),
        collection: "books".into(),
        source_path: path.into(),
        kind: DocumentKind::Markdown,
        content_hash: content_hash(path.as_bytes()),
        settings_hash: "settings".into(),
        title: Some("Title".into()),
        state: DocumentState::Indexing,
        chunk_count: 0,
    }
}

fn chunk(document: &Document, ordinal: u32, text: &str) -> Chunk {
    let text_hash = content_hash(text.as_bytes());
    Chunk {
        id: ChunkId::new(document.id, ordinal, &text_hash),
        document_id: document.id,
        ordinal,
        text: text.into(),
        text_hash,
        token_count: 3,
        location: ChunkLocation {
            line_start: ordinal + 1,
            line_end: ordinal + 2,
            section: vec!["A".into(), "B".into()],
            anchor: Some("a".into()),
        },
    }
}

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("grounded.db"))
        .await
        .unwrap();
    (dir, store)
}

#[tokio::test]
async fn new_document_chunks_become_visible_only_on_commit() {
    let (_dir, store) = store().await;
    let doc = document("a.md");
    let chunks = vec![chunk(&doc, 0, "one"), chunk(&doc, 1, "two")];
    let ids: Vec<ChunkId> = chunks.iter().map(|c| c.id).collect();

    store.mark_indexing(&doc).await.unwrap();
    assert!(store.visible_chunks(&ids).await.unwrap().is_empty());
    let recorded = store.find_document("books", "a.md").await.unwrap().unwrap();
    assert_eq!(recorded.state, DocumentState::Indexing);
    assert_eq!(
        recorded.content_hash, "",
        "uncommitted document must not look unchanged"
    );

    store.commit_document(&doc, &chunks).await.unwrap();
    assert_eq!(store.visible_chunks(&ids).await.unwrap().len(), 2);
    store.mark_ready(doc.id).await.unwrap();

    let recorded = store.find_document("books", "a.md").await.unwrap().unwrap();
    assert_eq!(recorded.state, DocumentState::Ready);
    assert_eq!(recorded.content_hash, doc.content_hash);
    assert_eq!(recorded.chunk_count, 2);
    assert_eq!(store.document_chunks(doc.id).await.unwrap(), chunks);
}

#[tokio::test]
async fn commit_replaces_old_chunks_and_delete_cascades() {
    let (_dir, store) = store().await;
    let doc = document("a.md");
    let old = vec![chunk(&doc, 0, "old")];
    store.mark_indexing(&doc).await.unwrap();
    store.commit_document(&doc, &old).await.unwrap();

    let new = vec![chunk(&doc, 0, "new"), chunk(&doc, 1, "newer")];
    store.mark_indexing(&doc).await.unwrap();
    assert_eq!(
        store.visible_chunks(&[old[0].id]).await.unwrap().len(),
        1,
        "old stays visible"
    );
    store.commit_document(&doc, &new).await.unwrap();
    assert!(store.visible_chunks(&[old[0].id]).await.unwrap().is_empty());

    let counts = store.collection_counts("books").await.unwrap();
    assert_eq!((counts.indexing_documents, counts.chunks), (1, 2));

    store.delete_document(doc.id).await.unwrap();
    assert!(
        store
            .find_document("books", "a.md")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .visible_chunks(&[new[0].id, new[1].id])
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn embedding_cache_round_trips_and_keeps_the_first_vector() {
    let (_dir, store) = store().await;
    let entries = vec![
        ("h1".to_string(), vec![0.5, -0.25]),
        ("h2".to_string(), vec![1.0, 0.0]),
    ];
    store.put_embeddings("model-a", &entries).await.unwrap();
    store
        .put_embeddings("model-a", &[("h1".to_string(), vec![9.0, 9.0])])
        .await
        .unwrap();

    let wanted = ["h1".to_string(), "h2".to_string(), "h3".to_string()];
    let found = store.get_embeddings("model-a", &wanted).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found["h1"], vec![0.5, -0.25]);

    let other_model = store.get_embeddings("model-b", &wanted).await.unwrap();
    assert!(other_model.is_empty());
}

#[tokio::test]
async fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grounded.db");
    let doc = document("a.md");
    {
        let store = SqliteStore::open(&path).await.unwrap();
        store.mark_indexing(&doc).await.unwrap();
        store
            .commit_document(&doc, &[chunk(&doc, 0, "kept")])
            .await
            .unwrap();
        store.close().await;
    }
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.document_chunks(doc.id).await.unwrap().len(), 1);
    assert_eq!(store.list_documents("books").await.unwrap().len(), 1);
}
