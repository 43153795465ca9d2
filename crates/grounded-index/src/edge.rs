//! The Qdrant Edge backend of [`VectorIndex`]: every collection is one
//! in-process Qdrant shard in its own directory, `root/<collection>/`.
//!
//! Qdrant Edge is synchronous and blocking, so every call into it runs on
//! tokio's blocking pool. A shard's write-ahead log locks its directory, so
//! each directory is opened at most once per process: shards are opened on
//! first use and kept in a map until their collection is deleted or the
//! [`EdgeIndex`] is dropped.
//!
//! This module is not a general Qdrant wrapper: it stores one named dense
//! vector per point ([`DENSE_VECTOR`], cosine distance), one named sparse
//! vector ([`SPARSE_VECTOR`], with the IDF modifier) and the payload that
//! [`PointPayload`](crate::PointPayload) describes, and nothing else. Hybrid queries run both
//! vectors as prefetches fused by reciprocal rank fusion inside the shard.
//!
//! Two properties of qdrant-edge 0.7.0 shape the code below:
//! - `EdgeShard::load` does not replay the write-ahead log, so a write is
//!   durable only once the shard is flushed. Every write flushes before it
//!   returns; a process killed between a write and its flush loses that write.
//!   The log is also never truncated, so a shard directory grows by the size
//!   of every write ever made (one 32 MiB log segment at a time) until the
//!   collection is deleted and rebuilt.
//! - `EdgeShard::flush` panics instead of waiting when another thread holds
//!   the log, so writes to one shard, flush included, take turns behind a
//!   per-shard lock.
//!
//! Points are never passed through `EdgeShard::optimize`, so search is exact
//! brute force over all points. That is fast at the sizes grounded is built
//! for (a few tens of thousands of chunks per collection); a larger
//! collection would want an HNSW index built by `optimize`, run behind the
//! same write lock.

use std::collections::HashMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use grounded_core::{ChunkId, DocumentId, validate_collection_name};
use ordered_float::OrderedFloat;
use qdrant_edge::{
    Condition, CountRequest, CreateIndex, Distance, EdgeConfig, EdgeShard, EdgeSparseVectorParams,
    EdgeVectorParams, FieldCondition, FieldIndexOperations, Filter, Fusion, JsonPath, Match,
    Modifier, NamedQuery, PayloadFieldSchema, PayloadSchemaType, PointId, PointInsertOperations,
    PointOperations, PointStruct, PointStructPersisted, Prefetch, QueryEnum, QueryRequest,
    ScoringQuery, ScrollRequest, UpdateOperation, ValueVariants, Vector, VectorInternal, Vectors,
    WithPayloadInterface, WithVector,
};
use serde_json::Value;

use crate::{
    CollectionSpec, DENSE_VECTOR, INDEXED_FIELDS, IndexError, Point, PointFilter, Query,
    SPARSE_VECTOR, ScoredPoint, SearchMode, SparseVector, VectorIndex,
};

/// The file every shard directory holds; its presence marks a collection.
///
/// qdrant-edge names it but does not export the name.
const SHARD_CONFIG_FILE: &str = "edge_config.json";

/// The payload field that ties a point to its document.
const DOCUMENT_ID_FIELD: &str = "document_id";

/// Points per update operation. Each operation is one write-ahead log record,
/// so a batch of chunks (about 3 KiB each with a 384-dimension vector) stays
/// well below the log's 32 MiB segment size.
const UPSERT_BATCH: usize = 256;

/// Point ids per scroll page when listing a document's points.
const SCROLL_PAGE: usize = 1024;

/// How long deleting a collection waits for operations still using its shard.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening a shard waits while another process holds it open. An
/// ingest holds a shard only while it writes one batch, and a search for the
/// length of one command, so a wait longer than this means a process that
/// keeps the collection open (a long-running server).
const BUSY_WAIT: Duration = Duration::from_secs(60);

/// The file under the root that a process locks while it looks for a
/// collection and creates it if missing, so that two processes never create
/// the same shard at once.
const CREATE_LOCK_FILE: &str = ".create.lock";

/// How often opening a busy shard is tried again.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// A [`VectorIndex`] that keeps one Qdrant Edge shard per collection under a
/// root directory.
///
/// Open at most one `EdgeIndex` per root in a process: a second one cannot
/// open a shard that the first holds open.
#[derive(Debug)]
pub struct EdgeIndex {
    shards: Arc<Shards>,
}

impl EdgeIndex {
    /// Opens the index under `root`, creating the directory if it is missing.
    ///
    /// Shards are opened later, on first use of their collection.
    ///
    /// # Errors
    /// [`IndexError::Backend`] when `root` cannot be created.
    pub fn open(root: &Path) -> Result<Self, IndexError> {
        std::fs::create_dir_all(root)
            .map_err(|err| backend(root, format!("failed to create the index directory: {err}")))?;

        let shards = Shards {
            root: root.to_path_buf(),
            open: Mutex::default(),
        };
        Ok(Self {
            shards: Arc::new(shards),
        })
    }

    /// The directory that holds one shard directory per collection.
    pub fn root(&self) -> &Path {
        &self.shards.root
    }

    /// Runs `task` on tokio's blocking pool; a panic inside it becomes an error.
    async fn blocking<T, F>(&self, task: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Shards) -> Result<T, IndexError> + Send + 'static,
    {
        let shards = Arc::clone(&self.shards);
        tokio::task::spawn_blocking(move || task(&shards))
            .await
            .map_err(|err| backend(&self.shards.root, join_error_message(err)))?
    }

    /// Runs `task` on the blocking pool against an existing collection's shard.
    async fn with_shard<T, F>(&self, collection: &str, task: F) -> Result<T, IndexError>
    where
        T: Send + 'static,
        F: FnOnce(&Shard) -> Result<T, IndexError> + Send + 'static,
    {
        let collection = collection.to_owned();
        self.blocking(move |shards| {
            let shard = shards.existing(&collection)?;
            task(&shard)
        })
        .await
    }
}

#[async_trait]
impl VectorIndex for EdgeIndex {
    async fn ensure_collection(&self, name: &str, spec: CollectionSpec) -> Result<(), IndexError> {
        let name = name.to_owned();
        self.blocking(move |shards| shards.ensure(&name, spec))
            .await
    }

    async fn list_collections(&self) -> Result<Vec<String>, IndexError> {
        self.blocking(Shards::list).await
    }

    async fn delete_collection(&self, name: &str) -> Result<(), IndexError> {
        let name = name.to_owned();
        self.blocking(move |shards| shards.remove(&name)).await
    }

    async fn upsert(&self, collection: &str, points: Vec<Point>) -> Result<(), IndexError> {
        let name = collection.to_owned();
        self.with_shard(collection, move |shard| shard.upsert(&name, points))
            .await
    }

    async fn delete_points(&self, collection: &str, ids: &[ChunkId]) -> Result<(), IndexError> {
        let ids: Vec<PointId> = ids.iter().map(|id| PointId::Uuid(id.0)).collect();
        self.with_shard(collection, move |shard| shard.delete_points(ids))
            .await
    }

    async fn delete_document(
        &self,
        collection: &str,
        document: DocumentId,
    ) -> Result<(), IndexError> {
        self.with_shard(collection, move |shard| shard.delete_document(document))
            .await
    }

    async fn document_points(
        &self,
        collection: &str,
        document: DocumentId,
    ) -> Result<Vec<ChunkId>, IndexError> {
        self.with_shard(collection, move |shard| {
            shard.point_ids(document_filter(document)?)
        })
        .await
    }

    async fn search(
        &self,
        collection: &str,
        query: &Query,
    ) -> Result<Vec<ScoredPoint>, IndexError> {
        let name = collection.to_owned();
        let query = query.clone();
        self.with_shard(collection, move |shard| shard.search(&name, &query))
            .await
    }

    async fn count(&self, collection: &str) -> Result<usize, IndexError> {
        self.with_shard(collection, Shard::count).await
    }

    async fn release(&self, collection: &str) -> Result<(), IndexError> {
        let name = collection.to_owned();
        self.blocking(move |shards| shards.release(&name)).await
    }
}

/// The open shards under one root, by collection name.
#[derive(Debug)]
struct Shards {
    root: PathBuf,
    open: Mutex<HashMap<String, Arc<Shard>>>,
}

impl Shards {
    /// The directory of a collection, after checking that its name is safe as one.
    fn dir(&self, name: &str) -> Result<PathBuf, IndexError> {
        validate_collection_name(name).map_err(|message| IndexError::InvalidInput {
            collection: name.to_owned(),
            message,
        })?;
        Ok(self.root.join(name))
    }

    /// The map of open shards. A panic elsewhere while the map was locked
    /// leaves it consistent (every change is a single insert or remove), so a
    /// poisoned lock is taken as it is.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Shard>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The shard of an existing collection, opened on first use.
    fn existing(&self, name: &str) -> Result<Arc<Shard>, IndexError> {
        let dir = self.dir(name)?;
        let mut open = self.lock();
        lookup(&mut open, name, &dir)?.ok_or_else(|| IndexError::CollectionNotFound(name.into()))
    }

    /// Creates a collection, or checks the dimension of an existing one.
    fn ensure(&self, name: &str, spec: CollectionSpec) -> Result<(), IndexError> {
        if spec.dimension == 0 {
            let message = "a collection needs vectors of at least one dimension".to_owned();
            return Err(IndexError::InvalidInput {
                collection: name.to_owned(),
                message,
            });
        }
        let dir = self.dir(name)?;
        let mut open = self.lock();
        if let Some(shard) = open.get(name) {
            return shard.check_schema(name, spec.dimension);
        }

        // Another process may be creating the same collection right now:
        // processes take turns deciding whether it exists.
        let _creating = lock_creation(&self.root)?;
        if let Some(shard) = lookup(&mut open, name, &dir)? {
            return shard.check_schema(name, spec.dimension);
        }

        let shard = Shard::create(&dir, spec.dimension)?;
        open.insert(name.to_owned(), Arc::new(shard));
        tracing::info!(
            collection = name,
            dimension = spec.dimension,
            "created collection"
        );
        Ok(())
    }

    /// The names of the directories under the root that hold a shard, sorted.
    fn list(&self) -> Result<Vec<String>, IndexError> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|err| backend(&self.root, format!("failed to list collections: {err}")))?;

        let mut names = Vec::new();
        for entry in entries {
            let entry = entry
                .map_err(|err| backend(&self.root, format!("failed to list collections: {err}")))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if validate_collection_name(&name).is_ok() && holds_shard(&entry.path()) {
                names.push(name);
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// Closes a collection's shard, flushing it, so that another process can
    /// open it; the next use here opens it again.
    fn release(&self, name: &str) -> Result<(), IndexError> {
        let dir = self.dir(name)?;
        let mut open = self.lock();
        close_open(
            &mut open,
            name,
            &dir,
            "the collection is still in use; it stays open",
        )
    }

    /// Closes a collection's shard and removes its directory.
    ///
    /// The directory is removed even when it holds no complete shard, so that
    /// a collection whose creation failed halfway can be cleaned up. While it
    /// waits for operations in flight on this collection to finish, no other
    /// collection can be opened or created.
    fn remove(&self, name: &str) -> Result<(), IndexError> {
        let dir = self.dir(name)?;
        let mut open = self.lock();
        let busy = "the collection is still in use; try deleting it again later";
        close_open(&mut open, name, &dir, busy)?;

        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(collection = name, "deleted collection");
                Ok(())
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(backend(
                &dir,
                format!("failed to remove the collection: {err}"),
            )),
        }
    }
}

/// The open shard of a collection, loading it from `dir` if it exists there
/// and is not open yet; `None` when the collection does not exist.
fn lookup(
    open: &mut HashMap<String, Arc<Shard>>,
    name: &str,
    dir: &Path,
) -> Result<Option<Arc<Shard>>, IndexError> {
    if let Some(shard) = open.get(name) {
        return Ok(Some(Arc::clone(shard)));
    }
    if !holds_shard(dir) {
        return Ok(None);
    }

    let shard = Arc::new(load_waiting(dir)?);
    open.insert(name.to_owned(), Arc::clone(&shard));
    tracing::debug!(collection = name, "opened collection");
    Ok(Some(shard))
}

/// Locks the root's [`CREATE_LOCK_FILE`], waiting while another process
/// holds it; the lock ends when the returned file is dropped.
fn lock_creation(root: &Path) -> Result<std::fs::File, IndexError> {
    let path = root.join(CREATE_LOCK_FILE);
    let failed = |err: std::io::Error| backend(&path, format!("failed to lock: {err}"));
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(failed)?;
    file.lock().map_err(failed)?;
    Ok(file)
}

/// Loads a shard, waiting up to [`BUSY_WAIT`] while another process holds it.
fn load_waiting(dir: &Path) -> Result<Shard, IndexError> {
    let deadline = Instant::now() + BUSY_WAIT;
    loop {
        match Shard::load(dir) {
            Err(IndexError::Busy { .. }) if Instant::now() < deadline => {
                std::thread::sleep(BUSY_RETRY);
            }
            loaded => return loaded,
        }
    }
}

fn holds_shard(dir: &Path) -> bool {
    dir.join(SHARD_CONFIG_FILE).is_file()
}

/// Closes the collection's shard if it is open; when operations in flight
/// keep it busy past [`CLOSE_TIMEOUT`], it stays open and `busy` is the error.
fn close_open(
    open: &mut HashMap<String, Arc<Shard>>,
    name: &str,
    dir: &Path,
    busy: &str,
) -> Result<(), IndexError> {
    if let Some(shard) = open.remove(name)
        && let Err(shard) = close(shard)
    {
        open.insert(name.to_owned(), shard);
        return Err(backend(dir, busy));
    }
    Ok(())
}

/// Drops a shard, which flushes and closes it, once no operation in flight
/// still holds it. Gives the shard back when that takes longer than
/// [`CLOSE_TIMEOUT`].
fn close(mut shard: Arc<Shard>) -> Result<(), Arc<Shard>> {
    let deadline = Instant::now() + CLOSE_TIMEOUT;
    loop {
        match Arc::try_unwrap(shard) {
            Ok(shard) => {
                drop(shard);
                return Ok(());
            }
            Err(shared) if Instant::now() >= deadline => return Err(shared),
            Err(shared) => {
                shard = shared;
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

/// One collection's Edge shard.
#[derive(Debug)]
struct Shard {
    edge: EdgeShard,
    /// Held by every write from its first update to its flush.
    writes: Mutex<()>,
}

impl Shard {
    /// Creates a shard in `dir` with a dense cosine vector of `dimension`, a
    /// sparse vector with the IDF modifier, and keyword indexes on
    /// [`INDEXED_FIELDS`].
    fn create(dir: &Path, dimension: usize) -> Result<Self, IndexError> {
        std::fs::create_dir_all(dir)
            .map_err(|err| backend(dir, format!("failed to create the collection: {err}")))?;

        let vector = EdgeVectorParams::builder(dimension, Distance::Cosine).build();
        let sparse = EdgeSparseVectorParams::builder()
            .modifier(Modifier::Idf)
            .build();
        let config = EdgeConfig::builder()
            .vector(DENSE_VECTOR, vector)
            .sparse_vector(SPARSE_VECTOR, sparse)
            .build();
        let edge = EdgeShard::new(dir, config).map_err(|err| backend(dir, err))?;

        let shard = Self {
            edge,
            writes: Mutex::new(()),
        };
        shard.write(keyword_indexes()?)?;
        Ok(shard)
    }

    /// Opens the shard in `dir` with the configuration stored there.
    fn load(dir: &Path) -> Result<Self, IndexError> {
        let edge = EdgeShard::load(dir, None).map_err(|err| open_error(dir, err))?;
        Ok(Self {
            edge,
            writes: Mutex::new(()),
        })
    }

    fn path(&self) -> &Path {
        self.edge.path()
    }

    /// The size of the shard's dense vectors, `None` if it has no [`DENSE_VECTOR`].
    fn dimension(&self) -> Option<usize> {
        // The config guard is a temporary of this expression: it is released
        // when this returns, before anything else touches the shard.
        self.edge
            .config()
            .vectors
            .get(DENSE_VECTOR)
            .map(|params| params.size)
    }

    /// Checks that the shard's vectors are the ones [`Shard::create`] makes,
    /// with dense vectors of `dimension`.
    fn check_schema(&self, collection: &str, dimension: usize) -> Result<(), IndexError> {
        let layout = {
            let config = self.edge.config();
            let dense = config
                .vectors
                .get(DENSE_VECTOR)
                .map(|params| (params.size, params.distance));
            let sparse = config
                .sparse_vectors
                .get(SPARSE_VECTOR)
                .map(|params| params.modifier.unwrap_or_default());
            let mut names: Vec<String> = config.vectors.keys().map(ToString::to_string).collect();
            names.extend(config.sparse_vectors.keys().map(ToString::to_string));
            names.sort_unstable();
            (dense, sparse, names)
        };
        let (dense, sparse, names) = layout;
        let problem = match (dense, sparse) {
            (Some((existing, _)), _) if existing != dimension => {
                return Err(IndexError::DimensionMismatch {
                    collection: collection.to_owned(),
                    existing,
                    requested: dimension,
                });
            }
            (Some((_, Distance::Cosine)), Some(Modifier::Idf)) => return Ok(()),
            (Some((_, distance)), Some(Modifier::Idf)) => {
                format!("its dense vector {DENSE_VECTOR:?} uses {distance:?} distance, not Cosine")
            }
            (Some(_), Some(_)) => {
                format!("its sparse vector {SPARSE_VECTOR:?} has no IDF modifier")
            }
            _ => format!(
                "it has the vectors {names:?}, but grounded needs a dense {DENSE_VECTOR:?} and a \
                 sparse {SPARSE_VECTOR:?} (collections made before hybrid search have no sparse \
                 one)"
            ),
        };
        let collection = collection.to_owned();
        Err(IndexError::SchemaMismatch {
            collection,
            problem,
        })
    }

    /// Fails unless the shard's dense vectors have `length` dimensions.
    fn check_dimension(&self, collection: &str, length: usize) -> Result<(), IndexError> {
        let existing = self.dimension().unwrap_or_default();
        if existing != length {
            let collection = collection.to_owned();
            return Err(IndexError::DimensionMismatch {
                collection,
                existing,
                requested: length,
            });
        }
        Ok(())
    }

    /// Applies `operations` in order, then flushes the shard, even when an
    /// operation failed, so that the ones before it are durable.
    fn write(&self, operations: Vec<UpdateOperation>) -> Result<(), IndexError> {
        let _turn = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
        let applied = operations
            .into_iter()
            .try_for_each(|operation| self.edge.update(operation));
        self.edge.flush();
        applied.map_err(|err| backend(self.path(), err))
    }

    fn upsert(&self, collection: &str, points: Vec<Point>) -> Result<(), IndexError> {
        if points.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let count = points.len();
        let dimension = self.dimension().unwrap_or_default();
        if let Some(point) = points.iter().find(|point| point.vector.len() != dimension) {
            self.check_dimension(collection, point.vector.len())?;
        }

        self.write(upsert_operations(points)?)?;

        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(collection, points = count, elapsed_ms, "upserted points");
        Ok(())
    }

    fn delete_points(&self, ids: Vec<PointId>) -> Result<(), IndexError> {
        if ids.is_empty() {
            return Ok(());
        }
        let count = ids.len();
        self.write(vec![UpdateOperation::PointOperation(
            PointOperations::DeletePoints { ids },
        )])?;
        tracing::debug!(path = %self.path().display(), points = count, "deleted points");
        Ok(())
    }

    fn delete_document(&self, document: DocumentId) -> Result<(), IndexError> {
        let delete = PointOperations::DeletePointsByFilter(document_filter(document)?);
        self.write(vec![UpdateOperation::PointOperation(delete)])?;
        tracing::debug!(document = %document, "deleted document points");
        Ok(())
    }

    /// The ids of every point that matches `filter`, in id order.
    fn point_ids(&self, filter: Filter) -> Result<Vec<ChunkId>, IndexError> {
        let mut ids = Vec::new();
        let mut offset = None;
        loop {
            let request = ScrollRequest {
                offset,
                limit: Some(SCROLL_PAGE),
                filter: Some(filter.clone()),
                with_payload: Some(WithPayloadInterface::Bool(false)),
                with_vector: WithVector::Bool(false),
                order_by: None,
            };
            let (records, next) = self
                .edge
                .scroll(request)
                .map_err(|e| backend(self.path(), e))?;
            for record in records {
                ids.push(chunk_id(record.id)?);
            }
            match next {
                Some(next) => offset = Some(next),
                None => return Ok(ids),
            }
        }
    }

    fn search(&self, collection: &str, query: &Query) -> Result<Vec<ScoredPoint>, IndexError> {
        if query.mode != SearchMode::Sparse {
            self.check_dimension(collection, query.dense.len())?;
        }
        let Some(request) = query_request(query)? else {
            return Ok(Vec::new());
        };

        let hits = self
            .edge
            .query(request)
            .map_err(|err| backend(self.path(), err))?;
        hits.into_iter().map(scored_point).collect()
    }

    fn count(&self) -> Result<usize, IndexError> {
        let request = CountRequest {
            filter: None,
            exact: true,
        };
        self.edge
            .count(request)
            .map_err(|err| backend(self.path(), err))
    }
}

/// The payload keys of [`INDEXED_FIELDS`] as index creations.
fn keyword_indexes() -> Result<Vec<UpdateOperation>, IndexError> {
    INDEXED_FIELDS
        .iter()
        .map(|field| -> Result<UpdateOperation, IndexError> {
            let create = CreateIndex {
                field_name: payload_key(field)?,
                field_schema: Some(PayloadFieldSchema::FieldType(PayloadSchemaType::Keyword)),
            };
            let operation = FieldIndexOperations::CreateIndex(create);
            Ok(UpdateOperation::FieldIndexOperation(operation))
        })
        .collect()
}

fn payload_key(field: &str) -> Result<JsonPath, IndexError> {
    field.parse().map_err(|()| IndexError::Backend {
        path: String::new(),
        message: format!("{field:?} is not a valid payload key"),
    })
}

/// Matches the points whose payload names `document`.
fn document_filter(document: DocumentId) -> Result<Filter, IndexError> {
    let condition = equals(payload_key(DOCUMENT_ID_FIELD)?, document.to_string());
    Ok(Filter::new_must(condition))
}

/// A payload field equal to a string, or holding it among an array's values.
fn equals(key: JsonPath, value: impl Into<String>) -> Condition {
    let value = Match::new_value(ValueVariants::String(value.into()));
    Condition::Field(FieldCondition::new_match(key, value))
}

/// Any of the conditions.
fn any_of(conditions: Vec<Condition>) -> Condition {
    Condition::Filter(Filter {
        should: Some(conditions),
        min_should: None,
        must: None,
        must_not: None,
    })
}

/// The Qdrant filter of a [`PointFilter`]; `None` when it lets everything through.
fn point_filter(filter: &PointFilter) -> Result<Option<Filter>, IndexError> {
    if filter.is_empty() {
        return Ok(None);
    }

    let mut must = Vec::new();
    if let Some(prefix) = filter.normalized_path_prefix() {
        must.push(equals(payload_key("path_prefixes")?, prefix));
    }
    if !filter.kinds.is_empty() {
        let kinds = filter.kinds.iter().map(|kind| kind.as_str());
        let kind_key = payload_key("kind")?;
        must.push(any_of(
            kinds.map(|kind| equals(kind_key.clone(), kind)).collect(),
        ));
    }
    for tag in &filter.tags {
        must.push(equals(payload_key("tags")?, tag.clone()));
    }
    for field in &filter.fields {
        let key: JsonPath = field.key.parse().map_err(|()| IndexError::InvalidFilter {
            filter: format!("{}={}", field.key, field.value),
            message: format!("{:?} is not a payload field name", field.key),
        })?;
        let mut values = vec![ValueVariants::String(field.value.clone())];
        values.extend(field.integer().map(ValueVariants::Integer));
        values.extend(field.boolean().map(ValueVariants::Bool));
        let conditions = values.into_iter().map(|value| {
            let matched = FieldCondition::new_match(key.clone(), Match::new_value(value));
            Condition::Field(matched)
        });
        must.push(any_of(conditions.collect()));
    }

    Ok(Some(Filter {
        should: None,
        min_should: None,
        must: Some(must),
        must_not: None,
    }))
}

/// A point as Qdrant stores it: the chunk id as a uuid point id, the vector
/// under [`DENSE_VECTOR`], the payload as a JSON object.
fn point_struct(point: Point) -> Result<PointStructPersisted, IndexError> {
    let payload = serde_json::to_value(&point.payload).map_err(|err| IndexError::Payload {
        id: point.id.to_string(),
        message: format!("failed to serialize: {err}"),
    })?;
    // `PointStruct::new` panics on anything but an object.
    if !payload.is_object() {
        let message = "the payload does not serialize to a JSON object".to_owned();
        return Err(IndexError::Payload {
            id: point.id.to_string(),
            message,
        });
    }

    let mut vectors: Vec<(&str, Vector)> = vec![(DENSE_VECTOR, point.vector.into())];
    if !point.sparse.is_empty() {
        let sparse =
            Vector::new_sparse(point.sparse.indices, point.sparse.values).map_err(|err| {
                IndexError::Payload {
                    id: point.id.to_string(),
                    message: format!("invalid sparse vector: {err}"),
                }
            })?;
        vectors.push((SPARSE_VECTOR, sparse));
    }
    let vectors = Vectors::new_named(vectors);
    Ok(PointStruct::new(PointId::Uuid(point.id.0), vectors, payload).into())
}

/// Upserts of `points` in batches of [`UPSERT_BATCH`].
fn upsert_operations(points: Vec<Point>) -> Result<Vec<UpdateOperation>, IndexError> {
    let mut operations = Vec::with_capacity(points.len().div_ceil(UPSERT_BATCH));
    let mut batch = Vec::with_capacity(UPSERT_BATCH.min(points.len()));
    for point in points {
        batch.push(point_struct(point)?);
        if batch.len() == UPSERT_BATCH {
            operations.push(upsert_operation(std::mem::take(&mut batch)));
        }
    }
    if !batch.is_empty() {
        operations.push(upsert_operation(batch));
    }
    Ok(operations)
}

fn upsert_operation(points: Vec<PointStructPersisted>) -> UpdateOperation {
    let insert = PointInsertOperations::PointsList(points);
    UpdateOperation::PointOperation(PointOperations::UpsertPoints(insert))
}

/// The shard query for `query`, with payload; `None` when it can find nothing
/// (no limit, or a sparse query without terms).
///
/// Hits whose fused scores tie (one at rank r of the dense list only, one at
/// rank r of the sparse list only) come back in no fixed order, because the
/// shard searches its segments in parallel: repeated hybrid searches can
/// order tied hits differently. The retriever orders its candidates by score
/// and then chunk id; only which tied point falls just past `limit` can
/// still differ between runs.
fn query_request(query: &Query) -> Result<Option<QueryRequest>, IndexError> {
    let filter = point_filter(&query.filter)?;
    let sparse = (!query.sparse.is_empty()).then(|| nearest_sparse(&query.sparse));
    let dense = nearest(VectorInternal::Dense(query.dense.clone()), DENSE_VECTOR);

    let (prefetches, scoring) = match (query.mode, sparse) {
        _ if query.limit == 0 => return Ok(None),
        (SearchMode::Dense, _) => (Vec::new(), dense),
        (SearchMode::Sparse, None) => return Ok(None),
        (SearchMode::Sparse, Some(sparse)) => (Vec::new(), sparse),
        (SearchMode::Hybrid, sparse) => {
            let prefetch = |scoring| Prefetch {
                prefetches: Vec::new(),
                query: Some(scoring),
                limit: query.prefetch_limit(),
                params: None,
                filter: filter.clone(),
                score_threshold: None,
            };
            let fusion = Fusion::Rrf {
                k: query.rrf_k,
                weights: None,
            };
            // A query without terms fuses the dense list alone, so that its
            // scores are still fused scores.
            let mut prefetches = vec![prefetch(dense)];
            prefetches.extend(sparse.map(prefetch));
            (prefetches, ScoringQuery::Fusion(fusion))
        }
    };

    Ok(Some(QueryRequest {
        prefetches,
        query: Some(scoring),
        filter,
        score_threshold: query.min_score.map(OrderedFloat),
        limit: query.limit,
        offset: 0,
        params: None,
        with_vector: WithVector::Bool(false),
        with_payload: WithPayloadInterface::Bool(true),
    }))
}

fn nearest(vector: VectorInternal, using: &str) -> ScoringQuery {
    let nearest = NamedQuery {
        query: vector,
        using: Some(using.to_owned()),
    };
    ScoringQuery::Vector(QueryEnum::Nearest(nearest))
}

fn nearest_sparse(sparse: &SparseVector) -> ScoringQuery {
    let vector = qdrant_edge::SparseVector {
        indices: sparse.indices.clone(),
        values: sparse.values.clone(),
    };
    nearest(VectorInternal::Sparse(vector), SPARSE_VECTOR)
}

fn scored_point(hit: qdrant_edge::ScoredPoint) -> Result<ScoredPoint, IndexError> {
    let id = chunk_id(hit.id)?;
    let payload = hit.payload.ok_or_else(|| IndexError::Payload {
        id: id.to_string(),
        message: "the point has no payload".to_owned(),
    })?;
    ScoredPoint::from_json(id, hit.score, Value::Object(payload.0))
}

fn chunk_id(id: PointId) -> Result<ChunkId, IndexError> {
    match id {
        PointId::Uuid(uuid) => Ok(ChunkId(uuid)),
        PointId::NumId(number) => Err(IndexError::Payload {
            id: number.to_string(),
            message: "the point id is a number, not a chunk uuid".to_owned(),
        }),
    }
}

/// A failure to open a shard; the write-ahead log's lock failing means that
/// another process has the collection open.
fn open_error(path: &Path, message: impl Display) -> IndexError {
    let message = message.to_string();
    if message.contains("WouldBlock") {
        return IndexError::Busy {
            path: path.display().to_string(),
        };
    }
    backend(path, message)
}

fn backend(path: &Path, message: impl Display) -> IndexError {
    IndexError::Backend {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

/// What went wrong in a blocking task: its panic message, if it panicked.
fn join_error_message(err: tokio::task::JoinError) -> String {
    let Ok(panic) = err.try_into_panic() else {
        return "the blocking task was cancelled".to_owned();
    };
    let message = panic
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned());
    match message {
        Some(message) => format!("panicked: {message}"),
        None => "panicked".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keyword indexes are created with the shard and survive a reopen.
    #[test]
    fn new_shards_index_keyword_fields() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("books");

        let shard = Shard::create(&path, 4).expect("created");
        assert_indexed(&shard);
        drop(shard);

        let shard = Shard::load(&path).expect("reopened");
        assert_indexed(&shard);
        assert_eq!(shard.dimension(), Some(4));
        shard
            .check_schema("books", 4)
            .expect("the layout create makes");
    }

    fn assert_indexed(shard: &Shard) {
        let schema = shard.edge.info().payload_schema;
        for field in INDEXED_FIELDS {
            let key = payload_key(field).expect("key");
            let info = schema
                .get(&key)
                .unwrap_or_else(|| panic!("{field} is not indexed"));
            assert_eq!(info.data_type, PayloadSchemaType::Keyword, "{field}");
        }
    }

    #[test]
    fn collection_names_that_are_not_safe_directories_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let index = EdgeIndex::open(dir.path()).expect("opened");
        for name in ["", "..", "a/b", "with space"] {
            let err = index.shards.existing(name).expect_err(name);
            assert!(
                matches!(err, IndexError::InvalidInput { .. }),
                "{name}: {err}"
            );
        }
    }
}
