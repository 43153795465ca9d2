//! The metadata store's contract, checked on both backends against real
//! databases: a SQLite file, and a scratch database on the Postgres server
//! that `GROUNDED_TEST_DATABASE_URL` names (skipped, with a message, where
//! it is unset; CI sets it). Then what only one backend does: claims across
//! processes, migrations racing, schemas of other versions.

mod access;

use grounded_core::{
    Chunk, ChunkId, ChunkLocation, Document, DocumentId, DocumentKind, DocumentMetadata,
    DocumentState, content_hash,
};
use grounded_store::scratch::{ScratchDatabase, test_server_url};
use grounded_store::{MetadataStore, PostgresStore, SqliteStore, StoreError};

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
        metadata: DocumentMetadata {
            encoding: Some("UTF-8".into()),
            size_bytes: 42,
            tags: vec!["a".into(), "b".into()],
        },
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

async fn sqlite_store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("grounded.db"))
        .await
        .unwrap();
    (dir, store)
}

async fn scratch_database(test: &str) -> Option<ScratchDatabase> {
    let server = test_server_url(test)?;
    Some(ScratchDatabase::create(&server).await.unwrap())
}

/// Runs each named contract test once on SQLite and once on Postgres.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (_dir, store) = super::sqlite_store().await;
                    super::$name(&store).await;
                }
            )*
        }

        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let test = concat!("on_postgres::", stringify!($name));
                    let Some(database) = super::scratch_database(test).await else {
                        return;
                    };
                    let store = super::PostgresStore::open(database.url()).await.unwrap();
                    super::$name(&store).await;
                    super::MetadataStore::close(&store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    new_document_chunks_become_visible_only_on_commit,
    commit_replaces_old_chunks_and_delete_cascades,
    embedding_cache_round_trips_and_keeps_the_first_vector,
    the_cache_pages_through_every_entry_in_key_order,
    documents_keep_their_metadata_and_collections_delete_whole,
);

async fn new_document_chunks_become_visible_only_on_commit(store: &dyn MetadataStore) {
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

async fn commit_replaces_old_chunks_and_delete_cascades(store: &dyn MetadataStore) {
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

async fn embedding_cache_round_trips_and_keeps_the_first_vector(store: &dyn MetadataStore) {
    let entries = vec![
        ("h1".to_string(), vec![0.5, -0.25]),
        ("h2".to_string(), vec![1.0, 0.0]),
    ];
    assert_eq!(store.put_embeddings("model-a", &entries).await.unwrap(), 2);
    let again = [
        ("h1".to_string(), vec![9.0, 9.0]),
        ("h9".to_string(), vec![1.0, 1.0]),
    ];
    assert_eq!(
        store.put_embeddings("model-a", &again).await.unwrap(),
        1,
        "h1 was there"
    );

    let wanted = ["h1".to_string(), "h2".to_string(), "h3".to_string()];
    let found = store.get_embeddings("model-a", &wanted).await.unwrap();
    assert_eq!(found.len(), 2);
    assert_eq!(found["h1"], vec![0.5, -0.25]);
    assert_eq!(store.cached_dimension("model-a").await.unwrap(), Some(2));
    assert_eq!(store.cached_dimension("model-b").await.unwrap(), None);

    let fixed = [("h1".to_string(), vec![7.0, 7.0, 7.0])];
    store.replace_embeddings("model-a", &fixed).await.unwrap();
    let found = store.get_embeddings("model-a", &wanted).await.unwrap();
    assert_eq!(found["h1"], vec![7.0, 7.0, 7.0]);
    assert_eq!(found["h2"], vec![1.0, 0.0]);

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

async fn the_cache_pages_through_every_entry_in_key_order(store: &dyn MetadataStore) {
    let vector = |seed: usize| vec![seed as f32, -(seed as f32) / 3.0, f32::MIN_POSITIVE];
    for model in ["model-b", "model-a"] {
        let entries: Vec<(String, Vec<f32>)> = (0..7)
            .map(|i| (content_hash(format!("{model}{i}").as_bytes()), vector(i)))
            .collect();
        store.put_embeddings(model, &entries).await.unwrap();
    }

    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.cached_embeddings(after.as_ref(), 3).await.unwrap();
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        seen.extend(page);
    }
    assert_eq!(seen.len(), 14);
    let keys: Vec<_> = seen.iter().map(|entry| entry.key.clone()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "pages must come in key order");
    assert_eq!(keys[0].model_id, "model-a");

    let first_b = &seen[7];
    let index = (0..7)
        .find(|i| content_hash(format!("model-b{i}").as_bytes()) == first_b.key.text_hash)
        .unwrap();
    assert_eq!(
        first_b.vector,
        vector(index),
        "vectors come back bit for bit"
    );
}

async fn documents_keep_their_metadata_and_collections_delete_whole(store: &dyn MetadataStore) {
    let doc = document("a.md");
    store.mark_indexing(&doc).await.unwrap();
    store
        .commit_document(&doc, &[chunk(&doc, 0, "x")])
        .await
        .unwrap();
    let recorded = store.find_document("books", "a.md").await.unwrap().unwrap();
    assert_eq!(recorded.metadata, doc.metadata);
    assert_eq!(recorded.title.as_deref(), Some("Title"));

    let mut untitled = document("b.md");
    untitled.title = None;
    let mut no_anchor = chunk(&untitled, 0, "y");
    no_anchor.location.anchor = None;
    no_anchor.location.section.clear();
    store.mark_indexing(&untitled).await.unwrap();
    store
        .commit_document(&untitled, std::slice::from_ref(&no_anchor))
        .await
        .unwrap();
    assert_eq!(
        store.document_chunks(untitled.id).await.unwrap(),
        vec![no_anchor]
    );
    assert_eq!(store.list_documents("books").await.unwrap().len(), 2);
    let mut elsewhere = document("c.md");
    elsewhere.collection = "articles".into();
    store.mark_indexing(&elsewhere).await.unwrap();
    assert_eq!(store.collections().await.unwrap(), ["articles", "books"]);

    store.delete_collection("books").await.unwrap();
    assert_eq!(store.collections().await.unwrap(), ["articles"]);
    assert!(store.list_documents("books").await.unwrap().is_empty());
    assert_eq!(store.collection_counts("books").await.unwrap().chunks, 0);
}

#[tokio::test]
async fn a_second_sqlite_ingest_waits_for_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grounded.db");
    let first = SqliteStore::open(&path).await.unwrap();
    let second = SqliteStore::open(&path).await.unwrap();
    let doc = document("a.md");
    assert!(first.try_claim(doc.id).await.unwrap());

    let waiting = tokio::spawn(async move { second.try_claim(doc.id).await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second ingest did not wait");

    first.close().await;
    drop(first);
    let claimed = tokio::time::timeout(std::time::Duration::from_secs(10), waiting);
    assert!(claimed.await.unwrap().unwrap());
}

#[tokio::test]
async fn postgres_claims_exclude_other_processes_and_end_with_them() {
    let Some(database) = scratch_database("postgres_claims").await else {
        return;
    };
    let first = PostgresStore::open(database.url()).await.unwrap();
    let second = PostgresStore::open(database.url()).await.unwrap();
    let (a, b) = (document("a.md").id, document("b.md").id);

    assert!(first.try_claim(a).await.unwrap());
    assert!(
        !second.try_claim(a).await.unwrap(),
        "a claim was taken twice"
    );
    assert!(second.try_claim(b).await.unwrap());
    assert!(!first.try_claim(b).await.unwrap());

    first.release_claims(&[a]).await.unwrap();
    assert!(second.try_claim(a).await.unwrap());

    // A store that goes away (as a killed process's connection does) takes
    // its claims with it.
    second.close().await;
    drop(second);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !first.try_claim(b).await.unwrap() {
        assert!(
            std::time::Instant::now() < deadline,
            "claim outlived its session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    first.close().await;
}

#[tokio::test]
async fn postgres_migrates_once_when_processes_start_together() {
    let Some(database) = scratch_database("postgres_migrates_once").await else {
        return;
    };
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = database.url().to_owned();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    let mut stores = Vec::new();
    for open in opens {
        let store = open.await.unwrap().expect("a concurrent open failed");
        assert_eq!(store.schema_version(), 2);
        stores.push(store);
    }
    let doc = document("a.md");
    stores[0].mark_indexing(&doc).await.unwrap();
    assert!(
        stores[3]
            .find_document("books", "a.md")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn postgres_refuses_databases_of_other_schemas() {
    let Some(newer) = scratch_database("postgres_refuses_other_schemas").await else {
        return;
    };
    let store = PostgresStore::open(newer.url()).await.unwrap();
    store.close().await;
    newer.record_newer_migration(99).await.unwrap();
    let error = PostgresStore::open(newer.url()).await.unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::NewerSchema {
                found: 99,
                known: 2,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("schema version 99"), "{error}");

    let foreign = scratch_database("postgres_refuses_other_schemas")
        .await
        .unwrap();
    foreign
        .execute("CREATE TABLE documents (name text)")
        .await
        .unwrap();
    let error = PostgresStore::open(foreign.url()).await.unwrap_err();
    assert!(matches!(error, StoreError::Migrate { .. }), "{error}");
    assert!(error.to_string().contains("already exists"), "{error}");
}

#[tokio::test]
async fn postgres_urls_that_cannot_work_fail_at_once_with_the_reason() {
    let Some(server) = test_server_url("postgres_urls_that_cannot_work") else {
        return;
    };
    let started = std::time::Instant::now();
    let error = PostgresStore::open("postgres://postgres@127.0.0.1:1/grounded")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("127.0.0.1:1"), "{error}");
    assert!(
        error.to_string().to_lowercase().contains("refused"),
        "{error}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "retried a refused connection"
    );

    let missing = replace_database(&server, "grounded_no_such_database");
    let error = PostgresStore::open(&missing).await.unwrap_err();
    assert!(error.to_string().contains("does not exist"), "{error}");

    let error = grounded_store::open_store("mysql://root:hunter2@localhost/db")
        .await
        .err()
        .unwrap();
    assert!(
        error.to_string().starts_with("unsupported database URL"),
        "{error}"
    );
    assert!(
        !error.to_string().contains("hunter2"),
        "a password was shown: {error}"
    );
}

/// `url` with its database name replaced.
fn replace_database(url: &str, name: &str) -> String {
    use sqlx::ConnectOptions;
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    options.database(name).to_url_lossy().to_string()
}

#[tokio::test]
async fn sqlite_migrates_once_when_processes_start_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("grounded.db");
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            tokio::spawn(async move { SqliteStore::open(&path).await })
        })
        .collect();
    for open in opens {
        let store = open.await.unwrap().expect("a concurrent open failed");
        assert_eq!(store.schema_version(), 3);
    }
}

#[tokio::test]
async fn postgres_connects_over_tls_when_the_url_asks() {
    use sqlx::Connection;

    let Some(database) = scratch_database("postgres_connects_over_tls").await else {
        return;
    };
    let mut plain = sqlx::PgConnection::connect(database.url()).await.unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&mut plain)
        .await
        .unwrap();
    if ssl != "on" {
        eprintln!("skipped postgres_connects_over_tls: the test server has ssl = {ssl}");
        return;
    }

    let separator = if database.url().contains('?') {
        '&'
    } else {
        '?'
    };
    let url = format!("{}{separator}sslmode=require", database.url());
    let store = PostgresStore::open(&url).await.unwrap();
    store.mark_indexing(&document("a.md")).await.unwrap();
    store.close().await;

    let mut tls = sqlx::PgConnection::connect(&url).await.unwrap();
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut tls)
            .await
            .unwrap();
    assert!(encrypted, "sslmode=require connected without TLS");
}
