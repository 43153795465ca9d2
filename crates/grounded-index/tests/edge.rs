//! The Qdrant Edge backend against real shards in temporary directories.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use grounded_core::{ChunkId, ChunkLocation, DocumentId, DocumentKind, content_hash};
use grounded_index::{
    CollectionSpec, DENSE_VECTOR, EdgeIndex, IndexError, Point, PointPayload, VectorIndex,
};
use tempfile::TempDir;

const DIM: usize = 4;
const SPEC: CollectionSpec = CollectionSpec { dimension: DIM };

fn temp_index() -> (TempDir, EdgeIndex) {
    let dir = tempfile::tempdir().expect("temp dir");
    let index = EdgeIndex::open(dir.path()).expect("index opens");
    (dir, index)
}

fn document(name: &str) -> DocumentId {
    DocumentId::new("test", name)
}

fn payload(document: DocumentId, ordinal: u32, text: &str) -> PointPayload {
    PointPayload {
        document_id: document,
        source_path: format!("docs/{document}.md"),
        kind: DocumentKind::Markdown,
        title: None,
        ordinal,
        text: text.to_owned(),
        location: ChunkLocation {
            line_start: ordinal + 1,
            line_end: ordinal + 2,
            section: Vec::new(),
            anchor: None,
        },
    }
}

fn point(document: DocumentId, ordinal: u32, vector: [f32; DIM]) -> Point {
    let text = format!("chunk {ordinal} of {document}");
    Point {
        id: ChunkId::new(document, ordinal, &content_hash(text.as_bytes())),
        vector: vector.to_vec(),
        payload: payload(document, ordinal, &text),
    }
}

/// A unit vector at `angle` radians in the plane of the first two axes.
fn at_angle(angle: f32) -> [f32; DIM] {
    [angle.cos(), angle.sin(), 0.0, 0.0]
}

fn ids(points: &[Point]) -> BTreeSet<ChunkId> {
    points.iter().map(|point| point.id).collect()
}

async fn ids_of(index: &EdgeIndex, collection: &str, document: DocumentId) -> BTreeSet<ChunkId> {
    let ids = index
        .document_points(collection, document)
        .await
        .expect("document points");
    let unique: BTreeSet<_> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "document_points returned duplicates"
    );
    unique
}

#[tokio::test(flavor = "multi_thread")]
async fn search_ranks_nearest_first_with_cosine_scores() {
    let (_dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    let doc = document("a");
    // Farther from the query the higher the ordinal, inserted out of order.
    let points = Vec::from([3, 0, 2, 1].map(|i| point(doc, i, at_angle(i as f32 * 0.4))));
    index.upsert("books", points.clone()).await.unwrap();

    // A scaled query: cosine similarity ignores length, a dot product would not.
    let hits = index
        .search("books", &[3.0, 0.0, 0.0, 0.0], 10)
        .await
        .unwrap();

    let ordinals: Vec<_> = hits.iter().map(|hit| hit.payload.ordinal).collect();
    assert_eq!(ordinals, [0, 1, 2, 3]);
    for (hit, ordinal) in hits.iter().zip(0..) {
        let expected = (ordinal as f32 * 0.4).cos();
        assert!(
            (hit.score - expected).abs() < 1e-4,
            "hit {ordinal}: {}",
            hit.score
        );
    }
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));
    let by_ordinal = |ordinal: u32| {
        points
            .iter()
            .find(|p| p.payload.ordinal == ordinal)
            .unwrap()
    };
    assert_eq!(hits[0].id, by_ordinal(0).id);

    let top_two = index.search("books", &at_angle(1.25), 2).await.unwrap();
    let ordinals: Vec<_> = top_two.iter().map(|hit| hit.payload.ordinal).collect();
    assert_eq!(ordinals, [3, 2]);

    assert!(
        index
            .search("books", &at_angle(0.0), 0)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn payload_round_trips_through_search() {
    let (_dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    let doc = document("guide.html");
    let mut stored = point(doc, 7, at_angle(0.0));
    stored.payload = PointPayload {
        document_id: doc,
        source_path: "site/guide.html".to_owned(),
        kind: DocumentKind::Html,
        title: Some("The \"Guide\" — ünïcode".to_owned()),
        ordinal: 7,
        text: "line one\nline two\ttabbed".to_owned(),
        location: ChunkLocation {
            line_start: 10,
            line_end: 24,
            section: vec!["Intro".to_owned(), "Setup".to_owned()],
            anchor: Some("setup".to_owned()),
        },
    };
    index.upsert("books", vec![stored.clone()]).await.unwrap();

    let hits = index.search("books", &at_angle(0.0), 1).await.unwrap();

    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, stored.id);
    assert_eq!(hits[0].payload, stored.payload);
}

#[tokio::test(flavor = "multi_thread")]
async fn upserting_an_existing_id_replaces_the_point() {
    let (_dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    let original = point(document("a"), 0, at_angle(0.0));
    index.upsert("books", vec![original.clone()]).await.unwrap();

    let mut replacement = original.clone();
    replacement.vector = at_angle(1.5).to_vec();
    replacement.payload.text = "edited".to_owned();
    index.upsert("books", vec![replacement]).await.unwrap();

    assert_eq!(index.count("books").await.unwrap(), 1);
    let hits = index.search("books", &at_angle(1.5), 1).await.unwrap();
    assert_eq!(hits[0].id, original.id);
    assert_eq!(hits[0].payload.text, "edited");
    assert!(
        hits[0].score > 0.999,
        "the vector was replaced too: {}",
        hits[0].score
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ensure_collection_is_idempotent() {
    let (_dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    index
        .upsert("books", vec![point(document("a"), 0, at_angle(0.0))])
        .await
        .unwrap();

    index.ensure_collection("books", SPEC).await.unwrap();

    assert_eq!(index.count("books").await.unwrap(), 1);
    assert_eq!(index.list_collections().await.unwrap(), ["books"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn another_dimension_is_a_mismatch_naming_both_sizes() {
    let (dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    let requested = CollectionSpec { dimension: 384 };

    let err = index
        .ensure_collection("books", requested)
        .await
        .unwrap_err();
    assert_mismatch(&err, DIM, 384);

    // The dimension comes from the shard on disk, not from memory.
    drop(index);
    let index = EdgeIndex::open(dir.path()).unwrap();
    let err = index
        .ensure_collection("books", requested)
        .await
        .unwrap_err();
    assert_mismatch(&err, DIM, 384);
}

#[tokio::test(flavor = "multi_thread")]
async fn vectors_of_the_wrong_length_are_refused() {
    let (_dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    let good = point(document("a"), 0, at_angle(0.0));
    let mut bad = point(document("a"), 1, at_angle(0.0));
    bad.vector.push(1.0);

    let err = index.upsert("books", vec![good, bad]).await.unwrap_err();
    assert_mismatch(&err, DIM, DIM + 1);
    assert_eq!(
        index.count("books").await.unwrap(),
        0,
        "nothing of the batch is written"
    );

    let err = index.search("books", &[1.0, 0.0], 3).await.unwrap_err();
    assert_mismatch(&err, DIM, 2);
}

fn assert_mismatch(err: &IndexError, expected_existing: usize, expected_requested: usize) {
    let IndexError::DimensionMismatch {
        collection,
        existing,
        requested,
    } = err
    else {
        panic!("expected a dimension mismatch, got {err}");
    };
    assert_eq!(collection, "books");
    assert_eq!(
        (*existing, *requested),
        (expected_existing, expected_requested)
    );
    let message = err.to_string();
    assert!(
        message.contains(&expected_existing.to_string()),
        "{message}"
    );
    assert!(
        message.contains(&expected_requested.to_string()),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_document_removes_exactly_its_points() {
    let (_dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    let (doomed, kept) = (document("doomed"), document("kept"));
    let doomed_points: Vec<_> = (0..3)
        .map(|i| point(doomed, i, at_angle(0.1 * i as f32)))
        .collect();
    let kept_points: Vec<_> = (0..2)
        .map(|i| point(kept, i, at_angle(1.0 + 0.1 * i as f32)))
        .collect();
    index
        .upsert(
            "books",
            [doomed_points.clone(), kept_points.clone()].concat(),
        )
        .await
        .unwrap();
    assert_eq!(index.count("books").await.unwrap(), 5);
    assert_eq!(ids_of(&index, "books", doomed).await, ids(&doomed_points));

    index.delete_document("books", doomed).await.unwrap();

    assert_eq!(index.count("books").await.unwrap(), 2);
    assert!(ids_of(&index, "books", doomed).await.is_empty());
    assert_eq!(ids_of(&index, "books", kept).await, ids(&kept_points));
    let hits = index.search("books", &at_angle(0.0), 10).await.unwrap();
    assert!(hits.iter().all(|hit| hit.payload.document_id == kept));

    // Deleting a document with no points is not an error.
    index.delete_document("books", doomed).await.unwrap();
    assert_eq!(index.count("books").await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn document_points_pages_through_large_documents() {
    let (_dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    let (big, small) = (document("big"), document("small"));
    // More points than one scroll page (1024) and than one upsert batch (256).
    let big_points: Vec<_> = (0..1500)
        .map(|i| point(big, i, [1.0, i as f32, 0.5, 0.0]))
        .collect();
    let small_points: Vec<_> = (0..3)
        .map(|i| point(small, i, [0.0, 0.0, 1.0, i as f32]))
        .collect();
    index
        .upsert("books", [big_points.clone(), small_points.clone()].concat())
        .await
        .unwrap();

    assert_eq!(index.count("books").await.unwrap(), 1503);
    assert_eq!(ids_of(&index, "books", big).await, ids(&big_points));
    assert_eq!(ids_of(&index, "books", small).await, ids(&small_points));
    assert!(ids_of(&index, "books", document("absent")).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_points_removes_the_given_ids_and_ignores_unknown_ones() {
    let (_dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();
    let doc = document("a");
    let points: Vec<_> = (0..3)
        .map(|i| point(doc, i, at_angle(0.3 * i as f32)))
        .collect();
    index.upsert("books", points.clone()).await.unwrap();
    let unknown = point(document("other"), 0, at_angle(0.0)).id;

    index
        .delete_points("books", &[points[1].id, unknown])
        .await
        .unwrap();
    index.delete_points("books", &[]).await.unwrap();

    assert_eq!(index.count("books").await.unwrap(), 2);
    assert_eq!(
        ids_of(&index, "books", doc).await,
        ids(&[points[0].clone(), points[2].clone()])
    );
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
    let hits = index.search("books", &at_angle(0.0), 1).await.unwrap();
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
async fn collections_are_listed_sorted_and_deleted() {
    let (dir, index) = temp_index();
    index.ensure_collection("zeta", SPEC).await.unwrap();
    index.ensure_collection("alpha", SPEC).await.unwrap();
    index
        .upsert("alpha", vec![point(document("a"), 0, at_angle(0.0))])
        .await
        .unwrap();
    // Neither a directory without a shard nor a file is a collection.
    std::fs::create_dir(dir.path().join("notes")).unwrap();
    std::fs::write(dir.path().join("stray.txt"), "not a shard").unwrap();

    assert_eq!(index.list_collections().await.unwrap(), ["alpha", "zeta"]);

    index.delete_collection("alpha").await.unwrap();
    assert_eq!(index.list_collections().await.unwrap(), ["zeta"]);
    assert!(!dir.path().join("alpha").exists());
    assert_not_found(index.count("alpha").await.unwrap_err(), "alpha");
    index.delete_collection("alpha").await.unwrap();
    index.delete_collection("never-created").await.unwrap();

    // The name is free again, even for another dimension, and starts empty.
    index
        .ensure_collection("alpha", CollectionSpec { dimension: 8 })
        .await
        .unwrap();
    assert_eq!(index.count("alpha").await.unwrap(), 0);
    assert_eq!(index.count("zeta").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_collection_is_not_found_and_not_created() {
    let (dir, index) = temp_index();
    let doc = document("a");

    assert_not_found(
        index.search("ghost", &at_angle(0.0), 3).await.unwrap_err(),
        "ghost",
    );
    assert_not_found(index.count("ghost").await.unwrap_err(), "ghost");
    assert_not_found(
        index
            .upsert("ghost", vec![point(doc, 0, at_angle(0.0))])
            .await
            .unwrap_err(),
        "ghost",
    );
    assert_not_found(
        index.delete_document("ghost", doc).await.unwrap_err(),
        "ghost",
    );
    assert_not_found(
        index.document_points("ghost", doc).await.unwrap_err(),
        "ghost",
    );
    assert_not_found(
        index.delete_points("ghost", &[]).await.unwrap_err(),
        "ghost",
    );

    assert!(index.list_collections().await.unwrap().is_empty());
    assert!(!dir.path().join("ghost").exists());
}

fn assert_not_found(err: IndexError, expected: &str) {
    assert!(
        matches!(&err, IndexError::CollectionNotFound(name) if name == expected),
        "expected collection {expected:?} not found, got {err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_collection_has_no_hits() {
    let (_dir, index) = temp_index();
    index.ensure_collection("books", SPEC).await.unwrap();

    assert!(
        index
            .search("books", &at_angle(0.0), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(index.count("books").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsafe_collection_names_are_refused() {
    let (dir, index) = temp_index();

    for name in ["../escape", "a/b", "", "dot.name"] {
        let err = index.ensure_collection(name, SPEC).await.unwrap_err();
        assert!(
            matches!(err, IndexError::InvalidInput { .. }),
            "{name:?}: {err}"
        );
    }
    let err = index
        .ensure_collection("books", CollectionSpec { dimension: 0 })
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::InvalidInput { .. }), "{err}");

    assert!(!dir.path().parent().unwrap().join("escape").exists());
    assert!(index.list_collections().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_to_one_collection_all_land() {
    let (_dir, index) = temp_index();
    let index = Arc::new(index);
    index.ensure_collection("books", SPEC).await.unwrap();

    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let index = Arc::clone(&index);
            tokio::spawn(async move {
                let doc = document(&format!("doc-{writer}"));
                for ordinal in 0..10 {
                    let vector = at_angle(0.1 * (writer * 10 + ordinal) as f32);
                    index
                        .upsert("books", vec![point(doc, ordinal, vector)])
                        .await?;
                }
                index.search("books", &at_angle(0.0), 5).await.map(|_| ())
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task").expect("writes succeed");
    }

    assert_eq!(index.count("books").await.unwrap(), 80);
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
    let err = index.search("books", &at_angle(0.0), 1).await.unwrap_err();

    let IndexError::Payload { id, .. } = &err else {
        panic!("expected a payload error, got {err}");
    };
    assert_eq!(id, "00000000-0000-0000-0000-000000000001");
}

fn write_foreign_point(shard_dir: &Path) {
    use qdrant_edge::{
        EdgeShard, PointId, PointInsertOperations, PointOperations, PointStruct, UpdateOperation,
        Vectors,
    };

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
    assert_eq!(ids_of(&first, "books", document("a")).await, ids(&written));
}

/// Two processes that create the same new collection at once both end up
/// with it, neither failing on the other's half-made shard.
#[tokio::test(flavor = "multi_thread")]
async fn two_processes_creating_one_collection_both_succeed() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let creators: Vec<_> = (0..2)
            .map(|_| {
                let index = EdgeIndex::open(dir.path()).unwrap();
                tokio::spawn(async move {
                    index.ensure_collection("books", SPEC).await?;
                    index.release("books").await
                })
            })
            .collect();
        for creator in creators {
            creator
                .await
                .unwrap()
                .unwrap_or_else(|err| panic!("round {round}: {err}"));
        }
        let index = EdgeIndex::open(dir.path()).unwrap();
        assert_eq!(index.list_collections().await.unwrap(), ["books"]);
        assert_eq!(index.count("books").await.unwrap(), 0);
    }
}
