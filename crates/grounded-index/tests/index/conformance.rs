//! What every backend must do the same way; each test runs on Edge and on
//! the server (see the `conformance_tests!` list in `index.rs`).

use std::collections::BTreeSet;
use std::sync::Arc;

use grounded_core::{ChunkId, ChunkLocation, DocumentKind};
use grounded_index::{
    CollectionSpec, DEFAULT_RRF_K, FieldMatch, IndexError, Point, PointFilter, PointPayload,
    ScoredPoint, SearchMode, VectorIndex, path_prefixes,
};

use crate::{
    DIM, Fixture, SPEC, assert_mismatch, assert_not_found, at_angle, dense, document, ids, ids_of,
    point, query, text_point,
};

const MODES: [SearchMode; 3] = [SearchMode::Dense, SearchMode::Sparse, SearchMode::Hybrid];

fn hit_ids(hits: &[ScoredPoint]) -> Vec<ChunkId> {
    hits.iter().map(|hit| hit.id).collect()
}

pub async fn dense_search_ranks_nearest_first_with_cosine_scores(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();
    let doc = document("a");
    // Farther from the query the higher the ordinal, inserted out of order.
    let points = Vec::from([3, 0, 2, 1].map(|i| point(doc, i, at_angle(i as f32 * 0.4))));
    index.upsert(&books, points.clone()).await.unwrap();

    // A scaled query: cosine similarity ignores length, a dot product would not.
    let hits = index
        .search(&books, &dense(&[3.0, 0.0, 0.0, 0.0], 10))
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
    let first = points.iter().find(|p| p.payload.ordinal == 0).unwrap();
    assert_eq!(hits[0].id, first.id);

    let top_two = index
        .search(&books, &dense(&at_angle(1.25), 2))
        .await
        .unwrap();
    let ordinals: Vec<_> = top_two.iter().map(|hit| hit.payload.ordinal).collect();
    assert_eq!(ordinals, [3, 2]);

    let none = index
        .search(&books, &dense(&at_angle(0.0), 0))
        .await
        .unwrap();
    assert!(none.is_empty());
}

/// Five chunks on which the embedding and the terms disagree: each mode has
/// its own obvious winner.
struct Ranking {
    collection: String,
    /// The query's embedding exactly; no query term.
    dense_best: Point,
    /// Both query terms, twice each; the embedding opposite the query's.
    sparse_best: Point,
    /// Second by embedding and second by terms: first once both count.
    both: Point,
    others: [Point; 2],
}

const RANKING_QUERY: &str = "ownership and borrowing";
const RANKING_VECTOR: [f32; DIM] = [1.0, 0.0, 0.0, 0.0];

async fn ranking(fx: &Fixture) -> Ranking {
    let collection = fx.collection("ranking");
    let doc = document("ranking");
    let ranking = Ranking {
        collection,
        dense_best: text_point(
            doc,
            0,
            RANKING_VECTOR,
            "Gardeners water their tomatoes at dawn",
        ),
        sparse_best: text_point(
            doc,
            1,
            [-1.0, 0.0, 0.0, 0.0],
            "Ownership and borrowing: ownership rules, borrowing rules",
        ),
        both: text_point(
            doc,
            2,
            at_angle(0.45),
            "The book covers ownership, borrowing, slices, structs, enums, modules, \
             collections, errors, generics, traits and lifetimes",
        ),
        others: [
            text_point(
                doc,
                3,
                at_angle(1.0),
                "Weather forecast: rain tomorrow afternoon",
            ),
            text_point(
                doc,
                4,
                at_angle(1.4),
                "Cooking pasta with garlic and olive oil",
            ),
        ],
    };
    let index = &*fx.index;
    index
        .ensure_collection(&ranking.collection, SPEC)
        .await
        .unwrap();
    let points = [
        ranking.others[1].clone(),
        ranking.sparse_best.clone(),
        ranking.dense_best.clone(),
        ranking.others[0].clone(),
        ranking.both.clone(),
    ];
    index
        .upsert(&ranking.collection, points.to_vec())
        .await
        .unwrap();
    ranking
}

pub async fn each_mode_ranks_its_own_best_point_first(fx: &Fixture) {
    let r = ranking(fx).await;
    let search = |mode| {
        let query = query(mode, &RANKING_VECTOR, RANKING_QUERY, 10);
        let (index, collection) = (Arc::clone(&fx.index), r.collection.clone());
        async move { index.search(&collection, &query).await.unwrap() }
    };

    let hits = search(SearchMode::Dense).await;
    let expected = [
        &r.dense_best,
        &r.both,
        &r.others[0],
        &r.others[1],
        &r.sparse_best,
    ];
    assert_eq!(hit_ids(&hits), expected.map(|p| p.id));

    // Only chunks that share a term with the query are found by terms, the
    // one with more of them first.
    let hits = search(SearchMode::Sparse).await;
    assert_eq!(hit_ids(&hits), [r.sparse_best.id, r.both.id]);
    assert!(hits[0].score > hits[1].score && hits[1].score > 0.0);

    // Second in both lists beats first in one; each list's winner is there.
    let hits = search(SearchMode::Hybrid).await;
    let found = hit_ids(&hits);
    assert_eq!(found[..2], [r.both.id, r.sparse_best.id]);
    assert!(found.contains(&r.dense_best.id), "{found:?}");
    assert_eq!(found.len(), 5);
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));
    let best_possible = 2.0 / DEFAULT_RRF_K as f32;
    assert!(hits[0].score <= best_possible + 1e-6, "{}", hits[0].score);
}

pub async fn a_point_without_terms_is_found_by_its_embedding_only(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();
    let doc = document("a");
    let silent = text_point(doc, 0, at_angle(0.0), "it is what it was");
    assert!(silent.sparse.is_empty(), "the text has only stop words");
    let worded = text_point(doc, 1, at_angle(1.0), "borrowing rules");
    index
        .upsert(&books, vec![silent.clone(), worded.clone()])
        .await
        .unwrap();

    let hits = index
        .search(
            &books,
            &query(SearchMode::Dense, &at_angle(0.0), "borrowing", 10),
        )
        .await
        .unwrap();
    assert_eq!(hit_ids(&hits), [silent.id, worded.id]);
    let hits = index
        .search(
            &books,
            &query(SearchMode::Sparse, &at_angle(0.0), "borrowing", 10),
        )
        .await
        .unwrap();
    assert_eq!(hit_ids(&hits), [worded.id]);
    let hits = index
        .search(
            &books,
            &query(SearchMode::Hybrid, &at_angle(0.0), "borrowing", 10),
        )
        .await
        .unwrap();
    assert_eq!(ids_set(&hits), BTreeSet::from([silent.id, worded.id]));
}

pub async fn a_query_of_stop_words_finds_nothing_by_terms(fx: &Fixture) {
    let r = ranking(fx).await;
    let index = &*fx.index;

    let sparse = query(SearchMode::Sparse, &[], "what is it", 10);
    assert!(sparse.sparse.is_empty());
    assert!(
        index
            .search(&r.collection, &sparse)
            .await
            .unwrap()
            .is_empty()
    );

    // Hybrid fuses the embedding's list alone: its ranking, with fused
    // scores (the first of one list scores 1 / k), so that --min-score
    // means the same in hybrid mode whatever the query's words.
    let hybrid = query(SearchMode::Hybrid, &RANKING_VECTOR, "what is it", 10);
    let hits = index.search(&r.collection, &hybrid).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert_eq!(hits[0].id, r.dense_best.id);
    let first = 1.0 / hybrid.rrf_k as f32;
    assert!((hits[0].score - first).abs() < 1e-6, "{}", hits[0].score);
}

fn ids_set(hits: &[ScoredPoint]) -> BTreeSet<ChunkId> {
    hits.iter().map(|hit| hit.id).collect()
}

/// Five chunks of five files whose payloads differ in every field a filter
/// can name; every text has the word "manual", so that a sparse query for
/// it finds them all.
struct Library {
    collection: String,
    points: Vec<Point>,
}

struct Shelf {
    source_path: &'static str,
    kind: DocumentKind,
    tags: &'static [&'static str],
    ordinal: u32,
    title: Option<&'static str>,
    anchor: Option<&'static str>,
}

const SHELVES: [Shelf; 5] = [
    Shelf {
        source_path: "docs/a.md",
        kind: DocumentKind::Markdown,
        tags: &["rust", "guide"],
        ordinal: 0,
        title: Some("Intro"),
        anchor: Some("intro"),
    },
    Shelf {
        source_path: "docs/guide/b.md",
        kind: DocumentKind::Markdown,
        tags: &["rust"],
        ordinal: 1,
        title: None,
        anchor: None,
    },
    Shelf {
        source_path: "docs2/c.html",
        kind: DocumentKind::Html,
        tags: &["rust", "guide"],
        ordinal: 2,
        title: Some("Setup Guide"),
        anchor: Some("setup"),
    },
    Shelf {
        source_path: "src/main.rs",
        kind: DocumentKind::Code,
        tags: &[],
        ordinal: 3,
        title: None,
        anchor: Some("intro"),
    },
    Shelf {
        source_path: "notes.txt",
        kind: DocumentKind::Text,
        tags: &["guide"],
        ordinal: 1,
        title: Some("3"),
        anchor: None,
    },
];

async fn library(fx: &Fixture) -> Library {
    let collection = fx.collection("library");
    let points: Vec<Point> = SHELVES
        .iter()
        .zip(0..)
        .map(|(shelf, i)| {
            let doc = document(shelf.source_path);
            let text = format!("manual page {i} of {}", shelf.source_path);
            let mut point = text_point(doc, shelf.ordinal, at_angle(0.2 * i as f32), &text);
            point.payload = PointPayload {
                document_id: doc,
                source_path: shelf.source_path.to_owned(),
                kind: shelf.kind,
                title: shelf.title.map(str::to_owned),
                ordinal: shelf.ordinal,
                text,
                location: ChunkLocation {
                    line_start: 1,
                    line_end: 2,
                    section: vec!["Top".to_owned()],
                    anchor: shelf.anchor.map(str::to_owned),
                },
                tags: shelf.tags.iter().map(|tag| (*tag).to_owned()).collect(),
                path_prefixes: path_prefixes(shelf.source_path),
            };
            point
        })
        .collect();
    fx.index.ensure_collection(&collection, SPEC).await.unwrap();
    fx.index.upsert(&collection, points.clone()).await.unwrap();
    Library { collection, points }
}

impl Library {
    /// The ids of the points at these positions of [`SHELVES`].
    fn ids(&self, positions: &[usize]) -> BTreeSet<ChunkId> {
        positions.iter().map(|&at| self.points[at].id).collect()
    }

    /// What each mode finds with `filter`, checked against `expected`.
    async fn assert_finds(
        &self,
        index: &dyn VectorIndex,
        filter: &PointFilter,
        expected: &[usize],
    ) {
        for mode in MODES {
            let mut query = query(mode, &at_angle(0.0), "manual", 10);
            query.filter = filter.clone();
            let hits = index.search(&self.collection, &query).await.unwrap();
            assert_eq!(
                ids_set(&hits),
                self.ids(expected),
                "{mode:?} with {filter:?}"
            );
            assert_eq!(
                hits.len(),
                expected.len(),
                "{mode:?} with {filter:?}: duplicates"
            );
        }
    }
}

fn prefix(path: &str) -> PointFilter {
    PointFilter {
        path_prefix: Some(path.to_owned()),
        ..PointFilter::default()
    }
}

fn fields(conditions: &[&str]) -> PointFilter {
    PointFilter {
        fields: conditions
            .iter()
            .map(|text| FieldMatch::parse(text).unwrap())
            .collect(),
        ..PointFilter::default()
    }
}

pub async fn every_filter_kind_returns_exactly_its_points_in_every_mode(fx: &Fixture) {
    let library = library(fx).await;
    let index = &*fx.index;
    let check = |filter: PointFilter, expected: &'static [usize]| {
        let library = &library;
        async move { library.assert_finds(index, &filter, expected).await }
    };

    check(PointFilter::default(), &[0, 1, 2, 3, 4]).await;

    // Path prefixes are whole components: `docs` is not a prefix of `docs2`.
    check(prefix("docs"), &[0, 1]).await;
    check(prefix("./docs/"), &[0, 1]).await;
    check(prefix("docs/guide"), &[1]).await;
    check(prefix("docs/a.md"), &[0]).await;
    check(prefix("doc"), &[]).await;

    let kinds = |kinds: Vec<DocumentKind>| PointFilter {
        kinds,
        ..PointFilter::default()
    };
    check(kinds(vec![DocumentKind::Html, DocumentKind::Code]), &[2, 3]).await;
    check(kinds(vec![DocumentKind::Markdown]), &[0, 1]).await;

    let tags = |tags: &[&str]| PointFilter {
        tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        ..PointFilter::default()
    };
    check(tags(&["rust"]), &[0, 1, 2]).await;
    check(tags(&["rust", "guide"]), &[0, 2]).await;
    check(tags(&["rust", "missing"]), &[]).await;

    // A value with a space is one keyword, a number also matches a string.
    check(fields(&["title=Setup Guide"]), &[2]).await;
    check(fields(&["title=Setup"]), &[]).await;
    check(fields(&["title=3"]), &[4]).await;
    check(fields(&["source_path=notes.txt"]), &[4]).await;
    check(fields(&["ordinal=1"]), &[1, 4]).await;
    check(fields(&["ordinal=3"]), &[3]).await;
    check(fields(&["location.anchor=intro"]), &[0, 3]).await;
    check(fields(&["location.anchor=intro", "ordinal=3"]), &[3]).await;

    let everything = PointFilter {
        path_prefix: Some("docs".to_owned()),
        kinds: vec![DocumentKind::Markdown],
        tags: vec!["guide".to_owned()],
        fields: Vec::new(),
    };
    check(everything, &[0]).await;
}

pub async fn a_filter_on_a_field_no_point_has_matches_nothing(fx: &Fixture) {
    let library = library(fx).await;
    let index = &*fx.index;

    for missing in [
        "nonexistent=1",
        "nonexistent=x",
        "location.nothing=intro",
        "tags[0].x=a",
    ] {
        library.assert_finds(index, &fields(&[missing]), &[]).await;
    }
    // Next to conditions that pass some points, the missing field still wins.
    let mut filter = fields(&["ordinal=1", "nonexistent=true"]);
    filter.tags = vec!["guide".to_owned()];
    library.assert_finds(index, &filter, &[]).await;
}

pub async fn a_field_name_that_is_not_a_payload_path_is_an_invalid_filter(fx: &Fixture) {
    let library = library(fx).await;

    for mode in MODES {
        let mut query = query(mode, &at_angle(0.0), "manual", 10);
        query.filter = fields(&["not a path=1"]);
        let err = fx
            .index
            .search(&library.collection, &query)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, IndexError::InvalidFilter { filter, .. } if filter == "not a path=1"),
            "{mode:?}: {err}"
        );
    }
}

pub async fn min_score_drops_lower_hits_in_every_mode(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();
    let doc = document("a");
    // Cosine similarities 1, 0.92, 0.70 and 0.36 to the query.
    let points: Vec<_> = (0..4)
        .map(|i| point(doc, i, at_angle(0.4 * i as f32)))
        .collect();
    index.upsert(&books, points.clone()).await.unwrap();

    let mut query = dense(&at_angle(0.0), 10);
    query.min_score = Some(0.8);
    let hits = index.search(&books, &query).await.unwrap();
    assert_eq!(hit_ids(&hits), [points[0].id, points[1].id]);

    // The sparse and fused scores have no fixed scale: the threshold sits
    // between the first two scores of the unfiltered search.
    let r = ranking(fx).await;
    for (mode, kept) in [
        (SearchMode::Sparse, &r.sparse_best),
        (SearchMode::Hybrid, &r.both),
    ] {
        let mut query = crate::query(mode, &RANKING_VECTOR, RANKING_QUERY, 10);
        let all = index.search(&r.collection, &query).await.unwrap();
        assert!(
            all.len() >= 2 && all[0].score > all[1].score,
            "{mode:?}: {all:?}"
        );

        query.min_score = Some((all[0].score + all[1].score) / 2.0);
        let hits = index.search(&r.collection, &query).await.unwrap();
        assert_eq!(hit_ids(&hits), [kept.id], "{mode:?}");

        query.min_score = Some(all[0].score * 2.0 + 1.0);
        assert!(
            index
                .search(&r.collection, &query)
                .await
                .unwrap()
                .is_empty(),
            "{mode:?}"
        );
    }
}

pub async fn payload_round_trips_through_search(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();
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
        tags: vec!["book".to_owned(), "with space".to_owned()],
        path_prefixes: path_prefixes("site/guide.html"),
    };
    index.upsert(&books, vec![stored.clone()]).await.unwrap();

    let hits = index
        .search(&books, &dense(&at_angle(0.0), 1))
        .await
        .unwrap();

    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].id, stored.id);
    assert_eq!(hits[0].payload, stored.payload);
}

pub async fn upserting_an_existing_id_replaces_the_point(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();
    let original = text_point(document("a"), 0, at_angle(0.0), "ownership");
    index.upsert(&books, vec![original.clone()]).await.unwrap();

    let mut replacement = original.clone();
    replacement.vector = at_angle(1.5).to_vec();
    replacement.sparse = crate::bm25().document("borrowing");
    replacement.payload.text = "edited".to_owned();
    index.upsert(&books, vec![replacement]).await.unwrap();

    assert_eq!(index.count(&books).await.unwrap(), 1);
    let hits = index
        .search(&books, &dense(&at_angle(1.5), 1))
        .await
        .unwrap();
    assert_eq!(hits[0].id, original.id);
    assert_eq!(hits[0].payload.text, "edited");
    assert!(
        hits[0].score > 0.999,
        "the vector was replaced too: {}",
        hits[0].score
    );

    // So were its terms.
    let by_terms = |text| query(SearchMode::Sparse, &[], text, 10);
    let hits = index.search(&books, &by_terms("borrowing")).await.unwrap();
    assert_eq!(hit_ids(&hits), [original.id]);
    assert!(
        index
            .search(&books, &by_terms("ownership"))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn ensure_collection_is_idempotent(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();
    index
        .upsert(&books, vec![point(document("a"), 0, at_angle(0.0))])
        .await
        .unwrap();

    index.ensure_collection(&books, SPEC).await.unwrap();
    // Edge opens a collection in one process at a time: hand it over.
    index.release(&books).await.unwrap();
    let other = fx.another_process();
    other.ensure_collection(&books, SPEC).await.unwrap();
    other.release(&books).await.unwrap();

    assert_eq!(index.count(&books).await.unwrap(), 1);
    let listed = index.list_collections().await.unwrap();
    assert_eq!(
        listed.iter().filter(|name| **name == books).count(),
        1,
        "{listed:?}"
    );
}

pub async fn another_dimension_is_a_mismatch_naming_both_sizes(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index
        .ensure_collection(&books, CollectionSpec { dimension: 384 })
        .await
        .unwrap();

    let requested = CollectionSpec { dimension: 768 };
    let err = index
        .ensure_collection(&books, requested)
        .await
        .unwrap_err();
    assert_mismatch(&err, &books, 384, 768);

    // A process that never saw the collection reads its dimension too.
    index.release(&books).await.unwrap();
    let other = fx.another_process();
    let err = other
        .ensure_collection(&books, requested)
        .await
        .unwrap_err();
    assert_mismatch(&err, &books, 384, 768);
    other.release(&books).await.unwrap();
}

pub async fn vectors_of_the_wrong_length_are_refused(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();
    let good = point(document("a"), 0, at_angle(0.0));
    let mut bad = point(document("a"), 1, at_angle(0.0));
    bad.vector.push(1.0);

    let err = index.upsert(&books, vec![good, bad]).await.unwrap_err();
    assert_mismatch(&err, &books, DIM, DIM + 1);
    assert_eq!(
        index.count(&books).await.unwrap(),
        0,
        "nothing of the batch is written"
    );

    for mode in [SearchMode::Dense, SearchMode::Hybrid] {
        let err = index
            .search(&books, &query(mode, &[1.0, 0.0], "borrowing", 3))
            .await
            .unwrap_err();
        assert_mismatch(&err, &books, DIM, 2);
    }
    // A sparse query does not use the embedding at all.
    let sparse = query(SearchMode::Sparse, &[], "borrowing", 3);
    assert!(index.search(&books, &sparse).await.unwrap().is_empty());
}

pub async fn delete_document_removes_exactly_its_points(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();
    let (doomed, kept) = (document("doomed"), document("kept"));
    let doomed_points: Vec<_> = (0..3)
        .map(|i| point(doomed, i, at_angle(0.1 * i as f32)))
        .collect();
    let kept_points: Vec<_> = (0..2)
        .map(|i| point(kept, i, at_angle(1.0 + 0.1 * i as f32)))
        .collect();
    index
        .upsert(
            &books,
            [doomed_points.clone(), kept_points.clone()].concat(),
        )
        .await
        .unwrap();
    assert_eq!(index.count(&books).await.unwrap(), 5);
    assert_eq!(ids_of(index, &books, doomed).await, ids(&doomed_points));

    index.delete_document(&books, doomed).await.unwrap();

    assert_eq!(index.count(&books).await.unwrap(), 2);
    assert!(ids_of(index, &books, doomed).await.is_empty());
    assert_eq!(ids_of(index, &books, kept).await, ids(&kept_points));
    let hits = index
        .search(&books, &dense(&at_angle(0.0), 10))
        .await
        .unwrap();
    assert!(hits.iter().all(|hit| hit.payload.document_id == kept));

    // Deleting a document with no points is not an error.
    index.delete_document(&books, doomed).await.unwrap();
    assert_eq!(index.count(&books).await.unwrap(), 2);
}

pub async fn document_points_pages_through_large_documents(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();
    let (big, small) = (document("big"), document("small"));
    // More points than one scroll page (1024) and than one upsert batch (256).
    let big_points: Vec<_> = (0..1500)
        .map(|i| point(big, i, [1.0, i as f32, 0.5, 0.0]))
        .collect();
    let small_points: Vec<_> = (0..3)
        .map(|i| point(small, i, [0.0, 0.0, 1.0, i as f32]))
        .collect();
    index
        .upsert(&books, [big_points.clone(), small_points.clone()].concat())
        .await
        .unwrap();

    assert_eq!(index.count(&books).await.unwrap(), 1503);
    assert_eq!(ids_of(index, &books, big).await, ids(&big_points));
    assert_eq!(ids_of(index, &books, small).await, ids(&small_points));
    assert!(ids_of(index, &books, document("absent")).await.is_empty());

    // Deleting more ids than one request carries.
    let doomed: Vec<ChunkId> = big_points[..1100].iter().map(|point| point.id).collect();
    index.delete_points(&books, &doomed).await.unwrap();
    assert_eq!(ids_of(index, &books, big).await, ids(&big_points[1100..]));
}

pub async fn delete_points_removes_the_given_ids_and_ignores_unknown_ones(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();
    let doc = document("a");
    let points: Vec<_> = (0..3)
        .map(|i| point(doc, i, at_angle(0.3 * i as f32)))
        .collect();
    index.upsert(&books, points.clone()).await.unwrap();
    let unknown = point(document("other"), 0, at_angle(0.0)).id;

    index
        .delete_points(&books, &[points[1].id, unknown])
        .await
        .unwrap();
    index.delete_points(&books, &[]).await.unwrap();

    assert_eq!(index.count(&books).await.unwrap(), 2);
    assert_eq!(
        ids_of(index, &books, doc).await,
        ids(&[points[0].clone(), points[2].clone()])
    );
}

pub async fn collections_are_listed_sorted_and_deleted(fx: &Fixture) {
    let index = &*fx.index;
    let (zeta, alpha) = (fx.collection("zeta"), fx.collection("alpha"));
    index.ensure_collection(&zeta, SPEC).await.unwrap();
    index.ensure_collection(&alpha, SPEC).await.unwrap();
    index
        .upsert(&alpha, vec![point(document("a"), 0, at_angle(0.0))])
        .await
        .unwrap();

    let listed = index.list_collections().await.unwrap();
    assert!(listed.is_sorted(), "{listed:?}");
    let position = |name: &String| listed.iter().position(|listed| listed == name);
    assert!(
        position(&alpha).unwrap() < position(&zeta).unwrap(),
        "{listed:?}"
    );

    index.delete_collection(&alpha).await.unwrap();
    let listed = index.list_collections().await.unwrap();
    assert!(
        !listed.contains(&alpha) && listed.contains(&zeta),
        "{listed:?}"
    );
    assert_not_found(index.count(&alpha).await.unwrap_err(), &alpha);
    index.delete_collection(&alpha).await.unwrap();
    let never = fx.collection("never-created");
    index.delete_collection(&never).await.unwrap();

    // The name is free again, even for another dimension, and starts empty.
    index
        .ensure_collection(&alpha, CollectionSpec { dimension: 8 })
        .await
        .unwrap();
    assert_eq!(index.count(&alpha).await.unwrap(), 0);
    assert_eq!(index.count(&zeta).await.unwrap(), 0);
    let hits = index.search(&alpha, &dense(&[1.0; 8], 3)).await.unwrap();
    assert!(hits.is_empty());
    let err = index
        .search(&alpha, &dense(&at_angle(0.0), 3))
        .await
        .unwrap_err();
    assert_mismatch(&err, &alpha, 8, DIM);
}

pub async fn a_missing_collection_is_not_found_and_not_created(fx: &Fixture) {
    let (index, ghost) = (&*fx.index, fx.collection("ghost"));
    let doc = document("a");

    for mode in MODES {
        let query = query(mode, &at_angle(0.0), "borrowing", 3);
        assert_not_found(index.search(&ghost, &query).await.unwrap_err(), &ghost);
    }
    assert_not_found(index.count(&ghost).await.unwrap_err(), &ghost);
    assert_not_found(
        index
            .upsert(&ghost, vec![point(doc, 0, at_angle(0.0))])
            .await
            .unwrap_err(),
        &ghost,
    );
    assert_not_found(index.upsert(&ghost, Vec::new()).await.unwrap_err(), &ghost);
    assert_not_found(
        index.delete_document(&ghost, doc).await.unwrap_err(),
        &ghost,
    );
    assert_not_found(
        index.document_points(&ghost, doc).await.unwrap_err(),
        &ghost,
    );
    assert_not_found(index.delete_points(&ghost, &[]).await.unwrap_err(), &ghost);
    let ids = [point(doc, 0, at_angle(0.0)).id];
    assert_not_found(index.delete_points(&ghost, &ids).await.unwrap_err(), &ghost);

    assert!(!index.list_collections().await.unwrap().contains(&ghost));
}

pub async fn an_empty_collection_has_no_hits(fx: &Fixture) {
    let (index, books) = (&*fx.index, fx.collection("books"));
    index.ensure_collection(&books, SPEC).await.unwrap();

    for mode in MODES {
        let query = query(mode, &at_angle(0.0), "borrowing", 10);
        assert!(
            index.search(&books, &query).await.unwrap().is_empty(),
            "{mode:?}"
        );
    }
    assert_eq!(index.count(&books).await.unwrap(), 0);
    assert!(ids_of(index, &books, document("a")).await.is_empty());
}

pub async fn unsafe_collection_names_are_refused(fx: &Fixture) {
    let index = &*fx.index;
    let before = index.list_collections().await.unwrap();

    for name in ["../escape", "a/b", "", "dot.name", "with space"] {
        let invalid = |err: IndexError| {
            assert!(
                matches!(err, IndexError::InvalidInput { .. }),
                "{name:?}: {err}"
            );
        };
        invalid(index.ensure_collection(name, SPEC).await.unwrap_err());
        invalid(index.count(name).await.unwrap_err());
        invalid(index.delete_collection(name).await.unwrap_err());
    }
    let books = fx.collection("books");
    let err = index
        .ensure_collection(&books, CollectionSpec { dimension: 0 })
        .await
        .unwrap_err();
    assert!(matches!(err, IndexError::InvalidInput { .. }), "{err}");

    let after = index.list_collections().await.unwrap();
    let new: Vec<_> = after.iter().filter(|name| !before.contains(name)).collect();
    assert!(new.is_empty(), "created {new:?}");
}

pub async fn concurrent_writers_to_one_collection_all_land(fx: &Fixture) {
    let books = fx.collection("books");
    fx.index.ensure_collection(&books, SPEC).await.unwrap();

    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (index, books) = (Arc::clone(&fx.index), books.clone());
            tokio::spawn(async move {
                let doc = document(&format!("doc-{writer}"));
                for ordinal in 0..10 {
                    let vector = at_angle(0.1 * (writer * 10 + ordinal) as f32);
                    index
                        .upsert(&books, vec![point(doc, ordinal, vector)])
                        .await?;
                }
                let query = query(SearchMode::Hybrid, &at_angle(0.0), "chunk", 5);
                index.search(&books, &query).await.map(|_| ())
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task").expect("writes succeed");
    }

    assert_eq!(fx.index.count(&books).await.unwrap(), 80);
}

/// Two processes that create the same new collection at once both end up
/// with it, neither failing on the other's half-made one.
pub async fn two_processes_creating_one_collection_both_succeed(fx: &Fixture) {
    // Several rounds: on Edge the race is in the files, and one round may not hit it.
    for round in 0..5 {
        let books = fx.collection(&format!("race{round}"));
        let creators: Vec<_> = (0..2)
            .map(|_| {
                let (index, books) = (fx.another_process(), books.clone());
                tokio::spawn(async move {
                    index.ensure_collection(&books, SPEC).await?;
                    index.release(&books).await
                })
            })
            .collect();
        for creator in creators {
            creator
                .await
                .unwrap()
                .unwrap_or_else(|err| panic!("round {round}: {err}"));
        }

        let listed = fx.index.list_collections().await.unwrap();
        assert!(listed.contains(&books), "round {round}: {listed:?}");
        assert_eq!(fx.index.count(&books).await.unwrap(), 0);
        fx.index.release(&books).await.unwrap();
    }
}
