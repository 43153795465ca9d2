//! What only the Qdrant Edge backend has: shard directories, reopening,
//! processes that take turns on a shard.

use std::path::Path;
use std::sync::Arc;

use grounded_index::{
    CollectionSpec, DENSE_VECTOR, EdgeIndex, IndexError, SPARSE_VECTOR, VectorIndex,
};
use qdrant_edge::{
    Distance, EdgeConfig, EdgeShard, EdgeSparseVectorParams, EdgeVectorParams, Modifier, PointId,
    PointInsertOperations, PointOperations, PointStruct, UpdateOperation, Vectors,
};

use crate::{
    DIM, SPEC, assert_mismatch, assert_not_found, assert_schema_mismatch, at_angle, dense,
    document, ids, ids_of, point,
};

fn temp_index() -> (tempfile::TempDir, EdgeIndex) {
    let dir = tempfile::tempdir().expect("temp dir");
    let index = EdgeIndex::open(dir.path()).expect("index opens");
    (dir, index)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dimension_is_read_from_the_shard_on_disk() {
    let (dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    drop(index);

    let index = EdgeIndex::open(dir.path()).unwrap();
    let err = index
        .ensure_collection("books", CollectionSpec { dimension: 384 })
        .await
        .unwrap_err();
    assert_mismatch(&err, "books", DIM, 384);
    index.ensure_collection("books", SPEC).await.unwrap();
}

/// Shards laid out otherwise than grounded lays them out (by a grounded from
/// before hybrid search, or by another tool) are refused, not written to.
#[tokio::test(flavor = "multi_thread")]
async fn a_shard_of_another_layout_is_a_schema_mismatch() {
    let dense = |distance| EdgeVectorParams::builder(DIM, distance).build();
    let idf = EdgeSparseVectorParams::builder()
        .modifier(Modifier::Idf)
        .build();
    let layouts = [
        (
            "dense-only",
            EdgeConfig::builder().vector(DENSE_VECTOR, dense(Distance::Cosine)),
            "bm25",
        ),
        (
            "no-idf",
            EdgeConfig::builder()
                .vector(DENSE_VECTOR, dense(Distance::Cosine))
                .sparse_vector(SPARSE_VECTOR, EdgeSparseVectorParams::builder().build()),
            "IDF",
        ),
        (
            "euclid",
            EdgeConfig::builder()
                .vector(DENSE_VECTOR, dense(Distance::Euclid))
                .sparse_vector(SPARSE_VECTOR, idf.clone()),
            "Euclid",
        ),
        (
            "unnamed",
            EdgeConfig::builder()
                .vector("", dense(Distance::Cosine))
                .sparse_vector(SPARSE_VECTOR, idf),
            "dense",
        ),
    ];

    let (dir, index) = temp_index();
    for (name, config, mentions) in layouts {
        let shard_dir = dir.path().join(name);
        std::fs::create_dir_all(&shard_dir).unwrap();
        let shard = EdgeShard::new(&shard_dir, config.build()).unwrap();
        shard.flush();
        drop(shard);

        let err = index.ensure_collection(name, SPEC).await.unwrap_err();
        assert_schema_mismatch(&err, name, mentions);
        assert!(
            err.to_string().contains("grounded collections delete"),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn points_persist_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (doc, other) = (document("a"), document("b"));
    let points: Vec<_> = (0..4)
        .map(|i| point(doc, i, at_angle(0.3 * i as f32)))
        .collect();
    let others: Vec<_> = (0..2).map(|i| point(other, i, at_angle(1.5))).collect();
    {
        let index = EdgeIndex::open(dir.path()).unwrap();
        index.ensure_collection("books", SPEC).await.unwrap();
        index
            .upsert("books", [points.clone(), others].concat())
            .await
            .unwrap();
    }

    let index = EdgeIndex::open(dir.path()).unwrap();
    assert_eq!(index.list_collections().await.unwrap(), ["books"]);
    assert_eq!(index.count("books").await.unwrap(), 6);
    let hits = index
        .search("books", &dense(&at_angle(0.0), 1))
        .await
        .unwrap();
    assert_eq!(hits[0].id, points[0].id);
    assert_eq!(hits[0].payload, points[0].payload);

    // Deletes are durable too, including the one by filter on the indexed field.
    index.delete_points("books", &[points[0].id]).await.unwrap();
    index.delete_document("books", other).await.unwrap();
    drop(index);

    let index = EdgeIndex::open(dir.path()).unwrap();
    assert_eq!(index.count("books").await.unwrap(), 3);
    assert_eq!(ids_of(&index, "books", doc).await, ids(&points[1..]));
}

/// A write is on disk when it returns, before anything is closed: the shard
/// copied while the index is still open (as a crash would leave it) holds it.
#[tokio::test(flavor = "multi_thread")]
async fn writes_are_durable_before_the_index_is_closed() {
    let (dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    let points: Vec<_> = (0..3)
        .map(|i| point(document("a"), i, at_angle(0.3 * i as f32)))
        .collect();
    index.upsert("books", points.clone()).await.unwrap();
    index.delete_points("books", &[points[2].id]).await.unwrap();

    let copy = tempfile::tempdir().unwrap();
    copy_dir(&dir.path().join("books"), &copy.path().join("books"));
    let reopened = EdgeIndex::open(copy.path()).unwrap();

    assert_eq!(reopened.count("books").await.unwrap(), 2);
    assert_eq!(
        ids_of(&reopened, "books", document("a")).await,
        ids(&points[..2])
    );
    drop(index);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_directories_holding_a_shard_are_collections() {
    let (dir, index) = temp_index();
    index.ensure_collection("zeta", SPEC).await.unwrap();
    index.ensure_collection("alpha", SPEC).await.unwrap();
    std::fs::create_dir(dir.path().join("notes")).unwrap();
    std::fs::write(dir.path().join("stray.txt"), "not a shard").unwrap();

    assert_eq!(index.list_collections().await.unwrap(), ["alpha", "zeta"]);

    index.delete_collection("alpha").await.unwrap();
    assert!(!dir.path().join("alpha").exists());
    assert_eq!(index.list_collections().await.unwrap(), ["zeta"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn nothing_is_written_outside_the_root_or_for_a_missing_collection() {
    let parent = tempfile::tempdir().unwrap();
    let root = parent.path().join("index");
    let index = EdgeIndex::open(&root).unwrap();

    for name in ["../escape", "a/b"] {
        let err = index.ensure_collection(name, SPEC).await.unwrap_err();
        assert!(
            matches!(err, IndexError::InvalidInput { .. }),
            "{name:?}: {err}"
        );
    }
    assert_not_found(index.count("ghost").await.unwrap_err(), "ghost");
    assert_not_found(
        index
            .upsert("ghost", vec![point(document("a"), 0, at_angle(0.0))])
            .await
            .unwrap_err(),
        "ghost",
    );

    assert!(!parent.path().join("escape").exists());
    assert!(!root.join("ghost").exists());
    assert!(!root.join("a").exists());
}

/// A point written by something other than grounded surfaces as a payload
/// error, not a panic or a silently dropped hit.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_payload_is_a_payload_error() {
    let (dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    drop(index);
    write_foreign_point(&dir.path().join("books"));

    let index = EdgeIndex::open(dir.path()).unwrap();
    let err = index
        .search("books", &dense(&at_angle(0.0), 1))
        .await
        .unwrap_err();

    let IndexError::Payload { id, .. } = &err else {
        panic!("expected a payload error, got {err}");
    };
    assert_eq!(id, "00000000-0000-0000-0000-000000000001");
}

fn write_foreign_point(shard_dir: &Path) {
    let shard = EdgeShard::load(shard_dir, None).unwrap();
    let id = PointId::Uuid(qdrant_edge::external::uuid::Uuid::from_u128(1));
    let vectors = Vectors::new_named([(DENSE_VECTOR, at_angle(0.0).to_vec())]);
    let payload = serde_json::json!({ "document_id": 42, "text": ["not", "a", "chunk"] });
    let point = PointStruct::new(id, vectors, payload).into();
    let insert = PointInsertOperations::PointsList(vec![point]);
    shard
        .update(UpdateOperation::PointOperation(
            PointOperations::UpsertPoints(insert),
        ))
        .unwrap();
    shard.flush();
}

/// Two indexes over one root stand for two processes: while one holds the
/// collection the other waits to open it, and takes it, with every point the
/// first wrote, once the first releases it; then they take turns writing.
#[tokio::test(flavor = "multi_thread")]
async fn a_released_collection_opens_in_the_other_process_with_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(EdgeIndex::open(dir.path()).unwrap());
    let second = Arc::new(EdgeIndex::open(dir.path()).unwrap());
    first.ensure_collection("books", SPEC).await.unwrap();
    let written: Vec<_> = (0..3)
        .map(|i| point(document("a"), i, at_angle(0.2 * i as f32)))
        .collect();
    first.upsert("books", written.clone()).await.unwrap();

    let waiting = {
        let second = Arc::clone(&second);
        tokio::spawn(async move { second.count("books").await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "opened a collection held elsewhere");

    first.release("books").await.unwrap();
    let counted = tokio::time::timeout(std::time::Duration::from_secs(10), waiting);
    assert_eq!(counted.await.unwrap().unwrap().unwrap(), 3);

    second
        .upsert("books", vec![point(document("b"), 0, at_angle(1.0))])
        .await
        .unwrap();
    second.release("books").await.unwrap();
    first
        .upsert("books", vec![point(document("c"), 0, at_angle(2.0))])
        .await
        .unwrap();
    assert_eq!(first.count("books").await.unwrap(), 5);
    assert_eq!(ids_of(&*first, "books", document("a")).await, ids(&written));
}
