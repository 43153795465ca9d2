//! The [`VectorIndex`] contract, run against every backend.
//!
//! The tests in `index/conformance.rs` are written once against
//! `&dyn VectorIndex` and run twice: on real Qdrant Edge shards in temporary
//! directories, always, and on the Qdrant server at `QDRANT_URL` (with
//! `QDRANT_API_KEY`, if set), only when that variable is set. Server tests
//! use collections with unique names and delete them at the end, passed or
//! failed. `index/edge.rs` holds what only the in-process backend has (files,
//! reopening, processes taking turns); `index/server.rs` what only the server
//! has.

#[path = "index/conformance.rs"]
mod conformance;
#[path = "index/edge.rs"]
mod edge;
#[path = "index/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};

use grounded_core::{ChunkId, ChunkLocation, DocumentId, DocumentKind, content_hash};
use grounded_index::{
    Bm25, CollectionSpec, DEFAULT_RRF_K, EdgeIndex, IndexError, Point, PointFilter, PointPayload,
    Query, SearchMode, ServerIndex, ServerOptions, SparseVector, VectorIndex, path_prefixes,
};
use tempfile::TempDir;

pub const DIM: usize = 4;
pub const SPEC: CollectionSpec = CollectionSpec { dimension: DIM };

/// One backend to run a test against, with what the test created on it.
pub struct Fixture {
    pub index: Arc<dyn VectorIndex>,
    place: Place,
    /// Collections handed out by [`Fixture::collection`], deleted at the end.
    created: Mutex<Vec<String>>,
}

enum Place {
    Edge(TempDir),
    Server(ServerOptions),
}

impl Fixture {
    /// An Edge index in a fresh temporary directory.
    pub fn edge() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = EdgeIndex::open(dir.path()).expect("index opens");
        Self {
            index: Arc::new(index),
            place: Place::Edge(dir),
            created: Mutex::default(),
        }
    }

    /// A client of the server at `QDRANT_URL`; `None`, after saying so on
    /// stderr, when the variable is not set.
    pub fn server(test: &str) -> Option<Self> {
        let Ok(url) = std::env::var("QDRANT_URL") else {
            say_server_skipped(test);
            return None;
        };
        let options = ServerOptions {
            api_key: std::env::var("QDRANT_API_KEY").ok(),
            ..ServerOptions::new(url)
        };
        let index = ServerIndex::connect(options.clone()).expect("client");
        Some(Self {
            index: Arc::new(index),
            place: Place::Server(options),
            created: Mutex::default(),
        })
    }

    /// A collection name for this test: `base` on Edge, where every test has
    /// its own directory; `base` and a random suffix on a shared server.
    pub fn collection(&self, base: &str) -> String {
        let name = match self.place {
            Place::Edge(_) => base.to_owned(),
            Place::Server(_) => {
                let unique = qdrant_edge::external::uuid::Uuid::new_v4()
                    .simple()
                    .to_string();
                format!("{base}-{}", &unique[..12])
            }
        };
        self.created.lock().unwrap().push(name.clone());
        name
    }

    /// A second index on the same backend, as another process would open it.
    pub fn another_process(&self) -> Arc<dyn VectorIndex> {
        match &self.place {
            Place::Edge(dir) => Arc::new(EdgeIndex::open(dir.path()).expect("index opens")),
            Place::Server(options) => {
                Arc::new(ServerIndex::connect(options.clone()).expect("client"))
            }
        }
    }

    pub fn server_options(&self) -> Option<&ServerOptions> {
        match &self.place {
            Place::Edge(_) => None,
            Place::Server(options) => Some(options),
        }
    }

    /// Deletes what the test created on a server; an Edge directory goes
    /// with the fixture.
    pub async fn clean_up(&self) {
        if matches!(self.place, Place::Edge(_)) {
            return;
        }
        let names = std::mem::take(&mut *self.created.lock().unwrap());
        for name in names {
            if let Err(err) = self.index.delete_collection(&name).await {
                eprintln!("failed to delete test collection {name}: {err}");
            }
        }
    }
}

/// Runs each named test of `conformance` on Edge and on the server, each as
/// its own `#[tokio::test]`, cleaning up after it even when it panics.
macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        mod on_edge {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    let fixture = crate::Fixture::edge();
                    crate::conformance::$name(&fixture).await;
                }
            )*
        }

        mod on_server {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    let Some(fixture) = crate::Fixture::server(stringify!($name)) else {
                        return;
                    };
                    crate::run_cleaning_up(&fixture, crate::conformance::$name(&fixture)).await;
                }
            )*
        }
    };
}

conformance_tests!(
    dense_search_ranks_nearest_first_with_cosine_scores,
    each_mode_ranks_its_own_best_point_first,
    a_point_without_terms_is_found_by_its_embedding_only,
    a_query_of_stop_words_finds_nothing_by_terms,
    every_filter_kind_returns_exactly_its_points_in_every_mode,
    a_filter_on_a_field_no_point_has_matches_nothing,
    a_field_name_that_is_not_a_payload_path_is_an_invalid_filter,
    min_score_drops_lower_hits_in_every_mode,
    payload_round_trips_through_search,
    upserting_an_existing_id_replaces_the_point,
    ensure_collection_is_idempotent,
    another_dimension_is_a_mismatch_naming_both_sizes,
    vectors_of_the_wrong_length_are_refused,
    delete_document_removes_exactly_its_points,
    document_points_pages_through_large_documents,
    delete_points_removes_the_given_ids_and_ignores_unknown_ones,
    collections_are_listed_sorted_and_deleted,
    a_missing_collection_is_not_found_and_not_created,
    an_empty_collection_has_no_hits,
    unsafe_collection_names_are_refused,
    concurrent_writers_to_one_collection_all_land,
    two_processes_creating_one_collection_both_succeed,
);

/// Awaits a test, then deletes its collections, then lets its panic go on.
pub async fn run_cleaning_up(fixture: &Fixture, test: impl Future<Output = ()>) {
    use futures::FutureExt;

    let outcome = std::panic::AssertUnwindSafe(test).catch_unwind().await;
    fixture.clean_up().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The BM25 model every test shares.
pub fn bm25() -> &'static Bm25 {
    static MODEL: OnceLock<Bm25> = OnceLock::new();
    MODEL.get_or_init(|| Bm25::english().expect("BM25 model"))
}

pub fn document(name: &str) -> DocumentId {
    DocumentId::new("test", name)
}

pub fn payload(document: DocumentId, ordinal: u32, text: &str) -> PointPayload {
    let source_path = format!("docs/{document}.md");
    PointPayload {
        document_id: document,
        path_prefixes: path_prefixes(&source_path),
        source_path,
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
        tags: Vec::new(),
    }
}

/// A point of `document` with this vector, a text naming it, and the
/// text's BM25 terms.
pub fn point(document: DocumentId, ordinal: u32, vector: [f32; DIM]) -> Point {
    let text = format!("chunk {ordinal} of {document}");
    text_point(document, ordinal, vector, &text)
}

pub fn text_point(document: DocumentId, ordinal: u32, vector: [f32; DIM], text: &str) -> Point {
    Point {
        id: ChunkId::new(document, ordinal, &content_hash(text.as_bytes())),
        vector: vector.to_vec(),
        sparse: bm25().document(text),
        payload: payload(document, ordinal, text),
    }
}

/// A unit vector at `angle` radians in the plane of the first two axes.
pub fn at_angle(angle: f32) -> [f32; DIM] {
    [angle.cos(), angle.sin(), 0.0, 0.0]
}

/// A query by embedding alone.
pub fn dense(vector: &[f32], limit: usize) -> Query {
    Query {
        mode: SearchMode::Dense,
        dense: vector.to_vec(),
        sparse: SparseVector::default(),
        filter: PointFilter::default(),
        limit,
        min_score: None,
        rrf_k: DEFAULT_RRF_K,
    }
}

/// A query in `mode` with both the embedding and the terms of `text`.
pub fn query(mode: SearchMode, vector: &[f32], text: &str, limit: usize) -> Query {
    Query {
        mode,
        sparse: bm25().query(text),
        ..dense(vector, limit)
    }
}

pub fn ids(points: &[Point]) -> BTreeSet<ChunkId> {
    points.iter().map(|point| point.id).collect()
}

pub async fn ids_of(
    index: &dyn VectorIndex,
    collection: &str,
    document: DocumentId,
) -> BTreeSet<ChunkId> {
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

pub fn assert_mismatch(
    err: &IndexError,
    expected_collection: &str,
    expected_existing: usize,
    expected_requested: usize,
) {
    let IndexError::DimensionMismatch {
        collection,
        existing,
        requested,
    } = err
    else {
        panic!("expected a dimension mismatch, got {err}");
    };
    assert_eq!(collection, expected_collection);
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

pub fn assert_not_found(err: IndexError, expected: &str) {
    assert!(
        matches!(&err, IndexError::CollectionNotFound(name) if name == expected),
        "expected collection {expected:?} not found, got {err}"
    );
}

pub fn assert_schema_mismatch(err: &IndexError, expected_collection: &str, mentions: &str) {
    let IndexError::SchemaMismatch {
        collection,
        problem,
    } = err
    else {
        panic!("expected a schema mismatch, got {err}");
    };
    assert_eq!(collection, expected_collection);
    assert!(
        problem.contains(mentions),
        "{problem:?} does not mention {mentions:?}"
    );
}

/// Says that a server test was skipped. The test harness captures the output
/// of passing tests, so this writes to stderr itself; the run's first skip
/// also says, once, that the whole server run is skipped.
fn say_server_skipped(test: &str) {
    use std::io::Write as _;
    static FIRST: std::sync::Once = std::sync::Once::new();

    let mut stderr = std::io::stderr().lock();
    FIRST.call_once(|| {
        let _ = writeln!(
            stderr,
            "skipped the conformance suite on a Qdrant server: QDRANT_URL is not set \
             (set it to a server's gRPC URL, e.g. http://localhost:6334, to run it)"
        );
    });
    let _ = writeln!(stderr, "skipped {test}: QDRANT_URL is not set");
}
