//! The Qdrant server backend of [`VectorIndex`]: every collection is a
//! collection of a Qdrant server (1.19 to 1.21), reached over gRPC with
//! `qdrant-client`.
//!
//! A server is shared by every process that talks to it, so nothing here
//! locks or releases anything: two ingests write to one collection at once,
//! and two processes that create one collection at once both succeed (the
//! second sees `AlreadyExists` and checks the first one's schema instead).
//!
//! This module is not a general Qdrant client: it stores the same points as
//! the Edge backend (one dense cosine vector [`DENSE_VECTOR`], one sparse
//! vector [`SPARSE_VECTOR`] with the IDF modifier, the payload that
//! [`PointPayload`](crate::PointPayload) describes) and answers the same queries with the same
//! meaning; `edge.rs` is the reference for what each call means.
//!
//! Writes go in batches of [`ServerOptions::upsert_batch`] points, a few
//! batches in flight at once, each acknowledged only once the server has
//! applied it (`wait=true`). Every request is retried with exponential
//! backoff when the server reports a condition that passes (unavailable,
//! overloaded, timed out, aborted) and never when the request itself is
//! wrong. Every request is idempotent (upserts and deletes by id or filter),
//! so a retry of one that did reach the server changes nothing.
//!
//! The dense dimension of each collection is remembered after it is first
//! read, so that a vector of the wrong length is refused before anything is
//! sent; a collection recreated elsewhere with another dimension is noticed
//! when the server refuses a request, and read again.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use futures::{StreamExt, stream};
use grounded_core::{ChunkId, DocumentId, validate_collection_name};
use qdrant_client::qdrant::r#match::MatchValue;
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::vectors_config::Config as VectorsConfigKind;
use qdrant_client::qdrant::{
    CollectionInfo, Condition, CountPointsBuilder, CreateCollectionBuilder,
    CreateFieldIndexCollectionBuilder, DeleteCollectionBuilder, DeletePointsBuilder, Distance,
    FieldType, Filter, Modifier, PointId, PointStruct, PointsIdsList, PointsOperationResponse,
    PrefetchQueryBuilder, Query as QdrantQuery, QueryPointsBuilder, RrfBuilder,
    ScrollPointsBuilder, SparseVectorParamsBuilder, SparseVectorsConfigBuilder, UpdateStatus,
    UpsertPointsBuilder, Vector, VectorInput, VectorParamsBuilder, VectorsConfigBuilder,
};
use qdrant_client::{Payload, Qdrant, QdrantError};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    CollectionSpec, DENSE_VECTOR, INDEXED_FIELDS, IndexError, Point, PointFilter, Query,
    SPARSE_VECTOR, ScoredPoint, SearchMode, SparseVector, VectorIndex,
};

/// The payload field that ties a point to its document.
const DOCUMENT_ID_FIELD: &str = "document_id";

/// Point ids per scroll page when listing a document's points, and per
/// request when deleting points by id.
const ID_PAGE: usize = 1024;

/// The first wait before a request is sent again; each later wait doubles.
const RETRY_MIN_DELAY: Duration = Duration::from_millis(200);

/// The longest wait between two tries of a request.
const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);

/// How many times a request is sent again before its error is returned.
const RETRY_TIMES: usize = 6;

/// gRPC status codes, as the gRPC specification numbers them: qdrant-client
/// does not re-export tonic's `Code`, but converts it to this number.
mod grpc_code {
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const NOT_FOUND: i32 = 5;
    pub const ALREADY_EXISTS: i32 = 6;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const ABORTED: i32 = 10;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
    pub const INVALID_ARGUMENT: i32 = 3;
}

/// Where the server is and how hard to push it.
#[derive(Clone)]
pub struct ServerOptions {
    /// The server's gRPC address, `http://host:6334` or `https://…`.
    pub url: String,
    /// Sent with every request; never logged and never part of an error.
    pub api_key: Option<String>,
    /// Points per upsert request.
    pub upsert_batch: usize,
    /// Upsert requests in flight at once.
    pub upsert_parallelism: usize,
    /// How long one request may take, connecting included, before it fails
    /// (and is tried again).
    pub timeout: Duration,
}

impl ServerOptions {
    /// The defaults for a server at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }
}

impl Default for ServerOptions {
    /// A server on this machine at Qdrant's gRPC port, 256 points per
    /// upsert, two upserts at once, 30 seconds per request.
    fn default() -> Self {
        Self {
            url: "http://localhost:6334".to_owned(),
            api_key: None,
            upsert_batch: 256,
            upsert_parallelism: 2,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Shows whether an API key is set, never the key.
impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api_key = self.api_key.as_ref().map(|_| "<redacted>");
        f.debug_struct("ServerOptions")
            .field("url", &self.url)
            .field("api_key", &api_key)
            .field("upsert_batch", &self.upsert_batch)
            .field("upsert_parallelism", &self.upsert_parallelism)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A [`VectorIndex`] on a Qdrant server.
pub struct ServerIndex {
    client: Qdrant,
    /// The server's address without any user info, as errors show it.
    url: String,
    upsert_batch: usize,
    upsert_parallelism: usize,
    /// The dense dimension of each collection seen so far.
    dimensions: Mutex<HashMap<String, usize>>,
}

impl fmt::Debug for ServerIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIndex")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ServerIndex {
    /// A client of the server at `options.url`.
    ///
    /// Nothing is sent yet: the connection is made by the first request, so
    /// a server that is down shows as an error of that request.
    ///
    /// # Errors
    /// [`IndexError::Backend`] when the URL is not an `http` or `https` URL.
    pub fn connect(options: ServerOptions) -> Result<Self, IndexError> {
        let url = redacted_url(&options.url);
        if !(options.url.starts_with("http://") || options.url.starts_with("https://")) {
            return Err(IndexError::Backend {
                path: url,
                message: "the server URL must start with http:// or https://".to_owned(),
            });
        }

        // The compatibility check would block this thread on a request and
        // print to stdout; the version is the operator's to choose.
        let client = Qdrant::from_url(&options.url)
            .api_key(options.api_key)
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .skip_compatibility_check()
            .build()
            .map_err(|err| IndexError::Backend {
                path: url.clone(),
                message: format!("failed to set up the client: {err}"),
            })?;

        Ok(Self {
            client,
            url,
            upsert_batch: options.upsert_batch.max(1),
            upsert_parallelism: options.upsert_parallelism.max(1),
            dimensions: Mutex::default(),
        })
    }

    /// The server's address, as errors name it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends a request, again after a pause while it fails for a reason that
    /// passes; `what` names the request in logs.
    async fn send<T, F, Fut>(&self, what: &'static str, request: F) -> Result<T, QdrantError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QdrantError>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(RETRY_MIN_DELAY)
            .with_max_delay(RETRY_MAX_DELAY)
            .with_max_times(RETRY_TIMES)
            .with_jitter_seed(jitter_seed())
            .with_jitter();
        request
            .retry(backoff)
            .when(is_transient)
            .adjust(|err, delay| delay.map(|delay| delay.max(retry_after(err))))
            .notify(|err, delay| {
                let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(request = what, delay_ms, error = %describe(err), "retrying");
            })
            .await
    }

    /// An error of a request on `collection`: a missing collection is
    /// [`IndexError::CollectionNotFound`], anything else a backend failure.
    /// `what` completes "failed … collection", as in "to search".
    fn failed(&self, collection: &str, what: &str, err: &QdrantError) -> IndexError {
        if has_code(err, grpc_code::NOT_FOUND) {
            return IndexError::CollectionNotFound(collection.to_owned());
        }
        self.backend(format!(
            "failed {what} collection {collection:?}: {}",
            describe(err)
        ))
    }

    fn backend(&self, message: String) -> IndexError {
        IndexError::Backend {
            path: self.url.clone(),
            message,
        }
    }

    /// Fails unless an update was applied before the server answered.
    fn applied(
        &self,
        collection: &str,
        what: &str,
        response: &PointsOperationResponse,
    ) -> Result<(), IndexError> {
        let status = response.result.map(|result| result.status);
        if status == Some(UpdateStatus::Completed as i32) {
            return Ok(());
        }
        let status = status
            .and_then(|status| UpdateStatus::try_from(status).ok())
            .map_or("none", |status| status.as_str_name());
        Err(self.backend(format!(
            "the server answered before it applied the request {what} collection \
             {collection:?} (status {status})"
        )))
    }

    fn lock_dimensions(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // Every change to the map is a single insert or remove, so a panic
        // elsewhere cannot leave it inconsistent.
        self.dimensions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn remember(&self, collection: &str, dimension: usize) {
        self.lock_dimensions()
            .insert(collection.to_owned(), dimension);
    }

    fn forget(&self, collection: &str) {
        self.lock_dimensions().remove(collection);
    }

    fn remembered(&self, collection: &str) -> Option<usize> {
        self.lock_dimensions().get(collection).copied()
    }

    /// The collection's configuration and payload indexes, as the server has them now.
    async fn info(&self, collection: &str) -> Result<CollectionInfo, IndexError> {
        let response = self
            .send("collection info", || {
                self.client.collection_info(collection)
            })
            .await
            .map_err(|err| self.failed(collection, "to read the configuration of", &err))?;
        response
            .result
            .ok_or_else(|| self.backend(format!("the server sent no info on {collection:?}")))
    }

    /// The collection's dense dimension, read from the server.
    async fn read_dimension(&self, collection: &str) -> Result<usize, IndexError> {
        let info = self.info(collection).await?;
        let dimension = dense_params(&info).map_or(0, |(size, _)| size);
        self.remember(collection, dimension);
        Ok(dimension)
    }

    /// Fails unless the collection exists with dense vectors of each of
    /// `lengths`; asks the server only when the remembered dimension does
    /// not settle it.
    async fn check_dimension(&self, collection: &str, lengths: &[usize]) -> Result<(), IndexError> {
        if let Some(dimension) = self.remembered(collection)
            && lengths.iter().all(|&length| length == dimension)
        {
            return Ok(());
        }

        let existing = self.read_dimension(collection).await?;
        match lengths.iter().find(|&&length| length != existing) {
            Some(&requested) => Err(IndexError::DimensionMismatch {
                collection: collection.to_owned(),
                existing,
                requested,
            }),
            None => Ok(()),
        }
    }

    /// The error of a request that carried dense vectors of `lengths`. A
    /// request the server refused as invalid is a dimension mismatch when
    /// the collection changed since its dimension was read (deleted and
    /// created again elsewhere).
    async fn vectors_failed(
        &self,
        collection: &str,
        what: &str,
        lengths: &[usize],
        err: &QdrantError,
    ) -> IndexError {
        let failure = self.failed(collection, what, err);
        let refused = has_code(err, grpc_code::INVALID_ARGUMENT);
        if !refused {
            return failure;
        }
        self.forget(collection);
        match self.check_dimension(collection, lengths).await {
            Ok(()) => failure,
            Err(err) => err,
        }
    }

    /// Creates the collection; one that another process created first counts as created.
    async fn create(&self, collection: &str, dimension: usize) -> Result<(), IndexError> {
        let mut vectors = VectorsConfigBuilder::default();
        let dense = VectorParamsBuilder::new(dimension as u64, Distance::Cosine);
        vectors.add_named_vector_params(DENSE_VECTOR, dense);
        let mut sparse = SparseVectorsConfigBuilder::default();
        let bm25 = SparseVectorParamsBuilder::default().modifier(Modifier::Idf);
        sparse.add_named_vector_params(SPARSE_VECTOR, bm25);
        let request = CreateCollectionBuilder::new(collection)
            .vectors_config(vectors)
            .sparse_vectors_config(sparse)
            .build();

        let created = self
            .send("create collection", || {
                self.client.create_collection(request.clone())
            })
            .await;
        match created {
            Ok(_) => {
                tracing::info!(collection, dimension, "created collection");
                Ok(())
            }
            Err(err) if has_code(&err, grpc_code::ALREADY_EXISTS) => {
                tracing::debug!(
                    collection,
                    "collection created by another process meanwhile"
                );
                Ok(())
            }
            Err(err) => Err(self.failed(collection, "to create", &err)),
        }
    }

    /// Creates the keyword indexes of [`INDEXED_FIELDS`] that the collection lacks.
    ///
    /// Creating an index that exists is not an error on the server, so two
    /// processes doing this at once both succeed.
    async fn create_indexes(
        &self,
        collection: &str,
        info: &CollectionInfo,
    ) -> Result<(), IndexError> {
        let missing = INDEXED_FIELDS
            .iter()
            .filter(|field| !info.payload_schema.contains_key(**field));
        for field in missing {
            let request =
                CreateFieldIndexCollectionBuilder::new(collection, *field, FieldType::Keyword)
                    .wait(true)
                    .build();
            let response = self
                .send("create index", || {
                    self.client.create_field_index(request.clone())
                })
                .await
                .map_err(|err| self.failed(collection, "to index a payload field of", &err))?;
            self.applied(collection, "to index a payload field of", &response)?;
        }
        Ok(())
    }

    /// Sends one batch of points, whose dense vectors have `lengths`, and
    /// waits until the server applied it.
    async fn upsert_batch(
        &self,
        collection: &str,
        lengths: &[usize],
        points: Vec<PointStruct>,
    ) -> Result<(), IndexError> {
        let what = "to upsert points into";
        let request = UpsertPointsBuilder::new(collection, points)
            .wait(true)
            .build();
        let sent = self
            .send("upsert", || self.client.upsert_points(request.clone()))
            .await;
        match sent {
            Ok(response) => self.applied(collection, what, &response),
            Err(err) => Err(self.vectors_failed(collection, what, lengths, &err).await),
        }
    }

    /// Deletes the points `request` picks and waits until the server applied it.
    async fn delete(
        &self,
        collection: &str,
        request: DeletePointsBuilder,
    ) -> Result<(), IndexError> {
        let request = request.wait(true).build();
        let response = self
            .send("delete points", || {
                self.client.delete_points(request.clone())
            })
            .await
            .map_err(|err| self.failed(collection, "to delete points from", &err))?;
        self.applied(collection, "to delete points from", &response)
    }

    /// Runs a query, whose dense vector has `lengths`, and reads its hits.
    async fn query(
        &self,
        collection: &str,
        lengths: &[usize],
        request: QueryPointsBuilder,
    ) -> Result<Vec<ScoredPoint>, IndexError> {
        let request = request.build();
        let sent = self
            .send("query", || self.client.query(request.clone()))
            .await;
        match sent {
            Ok(response) => response.result.into_iter().map(scored_point).collect(),
            Err(err) => Err(self
                .vectors_failed(collection, "to search", lengths, &err)
                .await),
        }
    }
}

#[async_trait]
impl VectorIndex for ServerIndex {
    async fn ensure_collection(&self, name: &str, spec: CollectionSpec) -> Result<(), IndexError> {
        check_name(name)?;
        if spec.dimension == 0 {
            let message = "a collection needs vectors of at least one dimension".to_owned();
            return Err(IndexError::InvalidInput {
                collection: name.to_owned(),
                message,
            });
        }

        let info = match self.info(name).await {
            Ok(info) => info,
            Err(IndexError::CollectionNotFound(_)) => {
                self.create(name, spec.dimension).await?;
                self.info(name).await?
            }
            Err(err) => return Err(err),
        };
        check_schema(name, &info, spec.dimension)?;
        self.remember(name, spec.dimension);

        self.create_indexes(name, &info).await
    }

    async fn list_collections(&self) -> Result<Vec<String>, IndexError> {
        let response = self
            .send("list collections", || self.client.list_collections())
            .await
            .map_err(|err| {
                self.backend(format!("failed to list collections: {}", describe(&err)))
            })?;

        // Collections that grounded could not name are another tool's.
        let mut names: Vec<String> = response
            .collections
            .into_iter()
            .map(|collection| collection.name)
            .filter(|name| validate_collection_name(name).is_ok())
            .collect();
        names.sort_unstable();
        Ok(names)
    }

    async fn delete_collection(&self, name: &str) -> Result<(), IndexError> {
        check_name(name)?;
        self.forget(name);
        let deleted = self
            .send("delete collection", || {
                self.client
                    .delete_collection(DeleteCollectionBuilder::new(name))
            })
            .await;
        match deleted {
            Ok(response) => {
                if response.result {
                    tracing::info!(collection = name, "deleted collection");
                }
                Ok(())
            }
            Err(err) => match self.failed(name, "to delete", &err) {
                IndexError::CollectionNotFound(_) => Ok(()),
                err => Err(err),
            },
        }
    }

    async fn upsert(&self, collection: &str, points: Vec<Point>) -> Result<(), IndexError> {
        check_name(collection)?;
        let started = Instant::now();
        let count = points.len();
        let lengths: Vec<usize> = points.iter().map(|point| point.vector.len()).collect();
        self.check_dimension(collection, &lengths).await?;

        // Every point is converted before the first is sent, so that a bad
        // one fails the call before anything is written.
        let points = points
            .into_iter()
            .map(point_struct)
            .collect::<Result<Vec<_>, _>>()?;
        let mut batches = Vec::with_capacity(count.div_ceil(self.upsert_batch));
        let mut points = points.into_iter().peekable();
        while points.peek().is_some() {
            batches.push(points.by_ref().take(self.upsert_batch).collect::<Vec<_>>());
        }

        // Batches land in no set order: a point id given twice in one call
        // may keep either version, where Edge keeps the last. Callers send
        // each chunk once; keeping the last would need the batches in order.
        let mut sent = stream::iter(batches)
            .map(|batch| self.upsert_batch(collection, &lengths, batch))
            .buffer_unordered(self.upsert_parallelism);
        while let Some(result) = sent.next().await {
            result?;
        }

        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(collection, points = count, elapsed_ms, "upserted points");
        Ok(())
    }

    async fn delete_points(&self, collection: &str, ids: &[ChunkId]) -> Result<(), IndexError> {
        check_name(collection)?;
        if ids.is_empty() {
            // Nothing to delete, but a missing collection is still an error.
            return self.check_dimension(collection, &[]).await;
        }

        for page in ids.chunks(ID_PAGE) {
            let ids: Vec<PointId> = page.iter().map(|id| point_id(*id)).collect();
            let request = DeletePointsBuilder::new(collection).points(PointsIdsList { ids });
            self.delete(collection, request).await?;
        }
        tracing::debug!(collection, points = ids.len(), "deleted points");
        Ok(())
    }

    async fn delete_document(
        &self,
        collection: &str,
        document: DocumentId,
    ) -> Result<(), IndexError> {
        check_name(collection)?;
        let request = DeletePointsBuilder::new(collection).points(document_filter(document));
        self.delete(collection, request).await?;
        tracing::debug!(collection, document = %document, "deleted document points");
        Ok(())
    }

    async fn document_points(
        &self,
        collection: &str,
        document: DocumentId,
    ) -> Result<Vec<ChunkId>, IndexError> {
        check_name(collection)?;
        let mut ids = Vec::new();
        let mut offset: Option<PointId> = None;
        loop {
            let mut request = ScrollPointsBuilder::new(collection)
                .filter(document_filter(document))
                .limit(ID_PAGE as u32)
                .with_payload(false)
                .with_vectors(false);
            if let Some(offset) = offset.take() {
                request = request.offset(offset);
            }
            let request = request.build();

            let page = self
                .send("scroll", || self.client.scroll(request.clone()))
                .await
                .map_err(|err| self.failed(collection, "to list the points of", &err))?;
            for point in page.result {
                ids.push(chunk_id(point.id)?);
            }
            match page.next_page_offset {
                Some(next) => offset = Some(next),
                None => return Ok(ids),
            }
        }
    }

    async fn search(
        &self,
        collection: &str,
        query: &Query,
    ) -> Result<Vec<ScoredPoint>, IndexError> {
        check_name(collection)?;
        // The dimension check also finds a missing collection, in every mode.
        let lengths = match query.mode {
            SearchMode::Sparse => Vec::new(),
            SearchMode::Dense | SearchMode::Hybrid => vec![query.dense.len()],
        };
        self.check_dimension(collection, &lengths).await?;
        let Some(request) = query_request(collection, query)? else {
            return Ok(Vec::new());
        };

        self.query(collection, &lengths, request).await
    }

    async fn count(&self, collection: &str) -> Result<usize, IndexError> {
        check_name(collection)?;
        let request = CountPointsBuilder::new(collection).exact(true).build();
        let response = self
            .send("count", || self.client.count(request.clone()))
            .await
            .map_err(|err| self.failed(collection, "to count the points of", &err))?;
        let count = response.result.map_or(0, |result| result.count);
        usize::try_from(count)
            .map_err(|_| self.backend(format!("{count} points do not fit in memory")))
    }
}

fn check_name(name: &str) -> Result<(), IndexError> {
    validate_collection_name(name).map_err(|message| IndexError::InvalidInput {
        collection: name.to_owned(),
        message,
    })
}

/// The size and distance of the collection's [`DENSE_VECTOR`], if it has one.
fn dense_params(info: &CollectionInfo) -> Option<(usize, i32)> {
    let params = info.config.as_ref()?.params.as_ref()?;
    let Some(VectorsConfigKind::ParamsMap(vectors)) =
        params.vectors_config.as_ref()?.config.as_ref()
    else {
        return None;
    };
    let dense = vectors.map.get(DENSE_VECTOR)?;
    Some((
        usize::try_from(dense.size).unwrap_or(usize::MAX),
        dense.distance,
    ))
}

/// Checks that the collection's vectors are the ones [`ServerIndex::create`]
/// makes, with dense vectors of `dimension`; the same checks, in the same
/// order, as the Edge backend's.
fn check_schema(
    collection: &str,
    info: &CollectionInfo,
    dimension: usize,
) -> Result<(), IndexError> {
    let params = info
        .config
        .as_ref()
        .and_then(|config| config.params.as_ref());
    let sparse_vectors = params
        .and_then(|params| params.sparse_vectors_config.as_ref())
        .map(|config| &config.map);
    let modifier = sparse_vectors
        .and_then(|map| map.get(SPARSE_VECTOR))
        .map(|params| params.modifier.unwrap_or(Modifier::None as i32));

    let problem = match (dense_params(info), modifier) {
        (Some((existing, _)), _) if existing != dimension => {
            return Err(IndexError::DimensionMismatch {
                collection: collection.to_owned(),
                existing,
                requested: dimension,
            });
        }
        (Some((_, distance)), Some(modifier)) if modifier == Modifier::Idf as i32 => {
            if distance == Distance::Cosine as i32 {
                return Ok(());
            }
            let distance = Distance::try_from(distance).map_or("an unknown", |d| d.as_str_name());
            format!("its dense vector {DENSE_VECTOR:?} uses {distance} distance, not Cosine")
        }
        (Some(_), Some(_)) => format!("its sparse vector {SPARSE_VECTOR:?} has no IDF modifier"),
        _ => {
            let mut names = vector_names(info);
            names.extend(
                sparse_vectors
                    .into_iter()
                    .flat_map(|map| map.keys().cloned()),
            );
            names.sort_unstable();
            format!(
                "it has the vectors {names:?}, but grounded needs a dense {DENSE_VECTOR:?} and a \
                 sparse {SPARSE_VECTOR:?} (collections made before hybrid search have no sparse \
                 one)"
            )
        }
    };
    Err(IndexError::SchemaMismatch {
        collection: collection.to_owned(),
        problem,
    })
}

/// The names of the collection's dense vectors; `""` for an unnamed one.
fn vector_names(info: &CollectionInfo) -> Vec<String> {
    let config = info
        .config
        .as_ref()
        .and_then(|config| config.params.as_ref())
        .and_then(|params| params.vectors_config.as_ref())
        .and_then(|vectors| vectors.config.as_ref());
    match config {
        Some(VectorsConfigKind::ParamsMap(map)) => map.map.keys().cloned().collect(),
        Some(VectorsConfigKind::Params(_)) => vec![String::new()],
        None => Vec::new(),
    }
}

/// The server query for `query`, with payload; `None` when it can find
/// nothing (no limit, or a sparse query without terms). The same request as
/// the Edge backend's `query_request`.
fn query_request(
    collection: &str,
    query: &Query,
) -> Result<Option<QueryPointsBuilder>, IndexError> {
    let filter = point_filter(&query.filter)?;
    let dense = || QdrantQuery::new_nearest(VectorInput::new_dense(query.dense.clone()));
    let sparse = (!query.sparse.is_empty()).then(|| nearest_sparse(&query.sparse));

    let mut request = QueryPointsBuilder::new(collection)
        .limit(query.limit as u64)
        .with_payload(true)
        .with_vectors(false);
    request = match (query.mode, sparse) {
        _ if query.limit == 0 => return Ok(None),
        (SearchMode::Dense, _) => request.query(dense()).using(DENSE_VECTOR),
        (SearchMode::Sparse, None) => return Ok(None),
        (SearchMode::Sparse, Some(sparse)) => request.query(sparse).using(SPARSE_VECTOR),
        (SearchMode::Hybrid, sparse) => {
            let prefetch = |scoring: QdrantQuery, using: &str| {
                let prefetch = PrefetchQueryBuilder::default()
                    .query(scoring)
                    .using(using)
                    .limit(query.prefetch_limit() as u64);
                match &filter {
                    Some(filter) => prefetch.filter(filter.clone()),
                    None => prefetch,
                }
            };
            let k = u32::try_from(query.rrf_k).unwrap_or(u32::MAX);
            // A query without terms fuses the dense list alone, so that its
            // scores are still fused scores.
            request = request.add_prefetch(prefetch(dense(), DENSE_VECTOR));
            if let Some(sparse) = sparse {
                request = request.add_prefetch(prefetch(sparse, SPARSE_VECTOR));
            }
            request.query(QdrantQuery::new_rrf(RrfBuilder::with_k(k)))
        }
    };
    if let Some(filter) = filter {
        request = request.filter(filter);
    }
    if let Some(min_score) = query.min_score {
        request = request.score_threshold(min_score);
    }
    Ok(Some(request))
}

fn nearest_sparse(sparse: &SparseVector) -> QdrantQuery {
    let vector = VectorInput::new_sparse(sparse.indices.clone(), sparse.values.clone());
    QdrantQuery::new_nearest(vector)
}

/// A payload field equal to a string, or holding it among an array's values.
///
/// The match is built as a keyword on purpose: qdrant-client turns a string
/// with whitespace into a full-text match.
fn equals(key: &str, value: impl Into<String>) -> Condition {
    Condition::matches(key, MatchValue::Keyword(value.into()))
}

/// Any of the conditions.
fn any_of(conditions: Vec<Condition>) -> Condition {
    Condition::from(Filter::should(conditions))
}

/// Matches the points whose payload names `document`.
fn document_filter(document: DocumentId) -> Filter {
    Filter::must([equals(DOCUMENT_ID_FIELD, document.to_string())])
}

/// The Qdrant filter of a [`PointFilter`]; `None` when it lets everything
/// through. The same conditions as the Edge backend's `point_filter`.
fn point_filter(filter: &PointFilter) -> Result<Option<Filter>, IndexError> {
    if filter.is_empty() {
        return Ok(None);
    }

    let mut must = Vec::new();
    if let Some(prefix) = filter.normalized_path_prefix() {
        must.push(equals("path_prefixes", prefix));
    }
    if !filter.kinds.is_empty() {
        let kinds = filter
            .kinds
            .iter()
            .map(|kind| equals("kind", kind.as_str()));
        must.push(any_of(kinds.collect()));
    }
    for tag in &filter.tags {
        must.push(equals("tags", tag.clone()));
    }
    for field in &filter.fields {
        // The server parses keys with this same parser; checking here gives
        // the typed error the Edge backend gives instead of a refusal.
        if field.key.parse::<qdrant_edge::JsonPath>().is_err() {
            return Err(IndexError::InvalidFilter {
                filter: format!("{}={}", field.key, field.value),
                message: format!("{:?} is not a payload field name", field.key),
            });
        }
        let mut values = vec![MatchValue::Keyword(field.value.clone())];
        values.extend(field.integer().map(MatchValue::Integer));
        values.extend(field.boolean().map(MatchValue::Boolean));
        let conditions = values
            .into_iter()
            .map(|value| Condition::matches(field.key.as_str(), value));
        must.push(any_of(conditions.collect()));
    }
    Ok(Some(Filter::must(must)))
}

/// A point as the server stores it: the chunk id as a uuid point id, the
/// vectors under their names, the payload as a JSON object.
fn point_struct(point: Point) -> Result<PointStruct, IndexError> {
    let id = point.id.to_string();
    let payload = serde_json::to_value(&point.payload).map_err(|err| IndexError::Payload {
        id: id.clone(),
        message: format!("failed to serialize: {err}"),
    })?;
    let payload = Payload::try_from(payload).map_err(|_| IndexError::Payload {
        id: id.clone(),
        message: "the payload does not serialize to a JSON object".to_owned(),
    })?;

    let mut vectors = HashMap::from([(DENSE_VECTOR.to_owned(), Vector::new_dense(point.vector))]);
    if !point.sparse.is_empty() {
        check_sparse(&point.sparse).map_err(|message| IndexError::Payload {
            id: id.clone(),
            message: format!("invalid sparse vector: {message}"),
        })?;
        let sparse = Vector::new_sparse(point.sparse.indices, point.sparse.values);
        vectors.insert(SPARSE_VECTOR.to_owned(), sparse);
    }
    Ok(PointStruct::new(point_id(point.id), vectors, payload))
}

/// The checks the server makes of a sparse vector, made before anything is
/// sent so that a bad one fails the whole call.
fn check_sparse(sparse: &SparseVector) -> Result<(), String> {
    if sparse.indices.len() != sparse.values.len() {
        return Err(format!(
            "{} indices but {} values",
            sparse.indices.len(),
            sparse.values.len()
        ));
    }
    let mut indices = sparse.indices.clone();
    indices.sort_unstable();
    if indices.windows(2).any(|pair| pair[0] == pair[1]) {
        return Err("an index occurs twice".to_owned());
    }
    Ok(())
}

fn point_id(id: ChunkId) -> PointId {
    PointId::from(id.0)
}

fn chunk_id(id: Option<PointId>) -> Result<ChunkId, IndexError> {
    match id.and_then(|id| id.point_id_options) {
        Some(PointIdOptions::Uuid(uuid)) => ChunkId::deserialize(Value::String(uuid.clone()))
            .map_err(|err| IndexError::Payload {
                id: uuid,
                message: format!("the point id is not a uuid: {err}"),
            }),
        Some(PointIdOptions::Num(number)) => Err(IndexError::Payload {
            id: number.to_string(),
            message: "the point id is a number, not a chunk uuid".to_owned(),
        }),
        None => Err(IndexError::Payload {
            id: String::new(),
            message: "the server sent a point without an id".to_owned(),
        }),
    }
}

fn scored_point(hit: qdrant_client::qdrant::ScoredPoint) -> Result<ScoredPoint, IndexError> {
    let id = chunk_id(hit.id)?;
    let payload = Value::from(Payload::from(hit.payload));
    ScoredPoint::from_json(id, hit.score, payload)
}

/// The gRPC code and message of a response error.
fn grpc_status(err: &QdrantError) -> Option<(i32, &str)> {
    match err {
        QdrantError::ResponseError { status }
        | QdrantError::ResourceExhaustedError { status, .. } => {
            Some((i32::from(status.code()), status.message()))
        }
        _ => None,
    }
}

fn has_code(err: &QdrantError, code: i32) -> bool {
    grpc_status(err).is_some_and(|(status, _)| status == code)
}

/// Whether a failed request may succeed if sent again unchanged.
fn is_transient(err: &QdrantError) -> bool {
    grpc_status(err).is_some_and(|(code, message)| is_transient_status(code, message))
}

/// Whether a gRPC status names a condition that passes.
///
/// qdrant-client reports a connection that could not be made (a server
/// that is restarting) as `Internal` with this message rather than as
/// `Unavailable`, so that one `Internal` counts as unavailable too.
fn is_transient_status(code: i32, message: &str) -> bool {
    match code {
        grpc_code::UNAVAILABLE
        | grpc_code::DEADLINE_EXCEEDED
        | grpc_code::RESOURCE_EXHAUSTED
        | grpc_code::ABORTED => true,
        grpc_code::INTERNAL => message.starts_with("Failed to connect to"),
        _ => false,
    }
}

/// How long the server asked to be left alone before the next try.
fn retry_after(err: &QdrantError) -> Duration {
    match err {
        QdrantError::ResourceExhaustedError {
            retry_after_seconds,
            ..
        } => Duration::from_secs(*retry_after_seconds).min(RETRY_MAX_DELAY),
        _ => Duration::ZERO,
    }
}

/// A request's error without the response metadata that qdrant-client's
/// own message appends.
/// An error as messages show it, without the user and password of any URL
/// in it (the client quotes the URL it failed to connect to).
fn describe(err: &QdrantError) -> String {
    let text = match grpc_status(err) {
        Some((code, message)) => {
            let code = grpc_code_name(code);
            format!("{code}: {message}")
        }
        None => err.to_string(),
    };
    without_user_info(&text)
}

/// `text` with the `user:password@` of every `scheme://user:password@host` removed.
fn without_user_info(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(user_end) => out.push_str(&authority[user_end + 1..]),
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

fn grpc_code_name(code: i32) -> String {
    match code {
        grpc_code::INVALID_ARGUMENT => "invalid argument".to_owned(),
        grpc_code::DEADLINE_EXCEEDED => "deadline exceeded".to_owned(),
        grpc_code::NOT_FOUND => "not found".to_owned(),
        grpc_code::ALREADY_EXISTS => "already exists".to_owned(),
        grpc_code::RESOURCE_EXHAUSTED => "resource exhausted".to_owned(),
        grpc_code::ABORTED => "aborted".to_owned(),
        grpc_code::INTERNAL => "internal".to_owned(),
        grpc_code::UNAVAILABLE => "unavailable".to_owned(),
        code => format!("gRPC status {code}"),
    }
}

/// A seed for the jitter of retry delays, different in each process, so
/// that processes that failed together do not retry in step.
fn jitter_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.subsec_nanos());
    u64::from(std::process::id()) << 32 | u64::from(nanos)
}

/// The URL without user info (`user:password@`), which errors must not show.
fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use grounded_core::DocumentKind;

    use super::*;
    use crate::FieldMatch;

    #[test]
    fn user_info_is_dropped_from_error_text() {
        let text = "Failed to connect to http://user:pw@127.0.0.1:1/, then https://a@b/c and x://y";
        assert_eq!(
            without_user_info(text),
            "Failed to connect to http://127.0.0.1:1/, then https://b/c and x://y"
        );
    }

    #[test]
    fn user_info_is_dropped_from_urls() {
        assert_eq!(
            redacted_url("https://user:secret@db.example:6334/x"),
            "https://db.example:6334/x"
        );
        assert_eq!(
            redacted_url("http://localhost:6334"),
            "http://localhost:6334"
        );
        assert_eq!(redacted_url("http://host/a@b"), "http://host/a@b");
    }

    #[test]
    fn the_api_key_is_not_in_debug_output() {
        let options = ServerOptions {
            api_key: Some("very-secret".to_owned()),
            ..ServerOptions::new("http://localhost:6334")
        };
        assert!(!format!("{options:?}").contains("very-secret"));
        let index = ServerIndex::connect(options).expect("client");
        assert!(!format!("{index:?}").contains("very-secret"));
    }

    #[test]
    fn urls_without_a_known_scheme_are_refused() {
        let err = ServerIndex::connect(ServerOptions::new("localhost:6334")).unwrap_err();
        assert!(matches!(err, IndexError::Backend { .. }), "{err}");
    }

    /// A value with a space stays one keyword: qdrant-client would make a
    /// full-text match of it.
    #[test]
    fn filters_match_whole_keywords() {
        let filter = PointFilter {
            kinds: vec![DocumentKind::Html],
            fields: vec![FieldMatch::parse("title=The Guide").expect("field")],
            ..PointFilter::default()
        };
        let filter = point_filter(&filter).expect("valid").expect("not empty");
        let text = format!("{filter:?}");
        assert!(text.contains("Keyword(\"The Guide\")"), "{text}");
        assert!(!text.contains("Text("), "{text}");

        let bad = PointFilter {
            fields: vec![FieldMatch::parse("not a path=1").expect("field")],
            ..PointFilter::default()
        };
        assert!(matches!(
            point_filter(&bad),
            Err(IndexError::InvalidFilter { .. })
        ));
    }

    #[test]
    fn only_passing_conditions_are_retried() {
        assert!(is_transient_status(grpc_code::UNAVAILABLE, "down"));
        assert!(is_transient_status(grpc_code::ABORTED, "conflict"));
        assert!(is_transient_status(
            grpc_code::INTERNAL,
            "Failed to connect to http://x: …"
        ));
        assert!(!is_transient_status(
            grpc_code::INTERNAL,
            "Service internal error"
        ));
        assert!(!is_transient_status(
            grpc_code::INVALID_ARGUMENT,
            "Wrong input"
        ));
        assert!(!is_transient_status(grpc_code::NOT_FOUND, "Not found"));
        assert!(!is_transient_status(grpc_code::ALREADY_EXISTS, "exists"));
    }
}
