//! `POST /v1/documents` (upload: JSON text or a multipart file),
//! `GET /v1/documents` and `DELETE /v1/documents/{id}`.
//!
//! An upload is written under the server's uploads directory, at its path
//! within its collection, and ingested by the ordinary pipeline: decoded,
//! chunked, embedded through the cache and indexed. Its document id comes
//! from the collection and the path, so uploading a path again replaces
//! that document, and the same content again changes nothing.

use std::path::{Component, Path};

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use grounded_auth::Principal;
use grounded_core::{Document, DocumentId};
use grounded_ingest::pipeline::NoProgress;
use grounded_ingest::{IngestOptions, IngestReport, Ingestor, SourceFile, document_kind};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::access::{Spend, record_spend};
use crate::api::{
    CollectionQuery, DocumentBody, DocumentInfo, DocumentList, UploadResponse, UploadStatus,
};
use crate::error::{ErrorBody, body_rejection};
use crate::extract::{ApiJson, ApiQuery};
use crate::idempotency::{self, Claim, Stored};
use crate::middleware::replayed_header;
use crate::{ApiError, AppState, metrics};

/// The longest document path accepted, in bytes.
const MAX_PATH_BYTES: usize = 1024;

/// The longest part of a document path, in bytes: what file systems allow.
const MAX_NAME_BYTES: usize = 255;

/// One document to store, however it arrived.
#[derive(Debug)]
struct Upload {
    path: String,
    bytes: Vec<u8>,
    collection: Option<String>,
    tags: Vec<String>,
}

impl Upload {
    /// What makes two uploads the same request, for `Idempotency-Key`.
    fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [
            self.path.as_bytes(),
            &self.bytes,
            self.collection.as_deref().unwrap_or("").as_bytes(),
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        for tag in &self.tags {
            hasher.update((tag.len() as u64).to_le_bytes());
            hasher.update(tag.as_bytes());
        }
        hex::encode(hasher.finalize())
    }
}

/// Uploads a document: JSON (`{"path", "text", "collection", "tags"}`) or
/// `multipart/form-data` with a `file` part (its file name is the path
/// unless a `path` part gives one) and optional `collection` and `tags`
/// parts. A repeated request with the same `Idempotency-Key` header and
/// content gets the first response again (with `Idempotent-Replayed: true`).
#[utoipa::path(
    post,
    path = "/v1/documents",
    tag = "documents",
    request_body(content(
        (DocumentBody = "application/json"),
        (Object = "multipart/form-data"),
    )),
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes a retried upload take effect once")),
    responses(
        (status = 201, description = "A new document", body = UploadResponse),
        (status = 200, description = "An existing document, updated or unchanged", body = UploadResponse),
        (status = 400, description = "Malformed body or unknown field", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Neither JSON nor multipart", body = ErrorBody),
        (status = 422, description = "A bad path, an unsupported type, text that cannot be decoded, or a reused Idempotency-Key", body = ErrorBody),
    )
)]
pub async fn upload(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    request: Request,
) -> Result<Response, ApiError> {
    let key = idempotency_key(request.headers())?;
    let upload = read_upload(request, &state).await?;

    let Some(key) = key else {
        return store_upload(&state, &principal, upload).await;
    };
    let guard = match state
        .idempotency()
        .claim(&format!("{}/{key}", principal.id), upload.fingerprint())
        .await?
    {
        Claim::Replay(stored) => return Ok(replay(stored)),
        Claim::Run(guard) => guard,
    };
    let response = store_upload(&state, &principal, upload).await?;
    let (response, stored) = keep(response).await?;
    guard.store(stored);
    Ok(response)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(idempotency::HEADER) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::invalid("Idempotency-Key must be printable ASCII"))?;
    Ok(Some(key.to_string()))
}

/// The body as an [`Upload`], from JSON or multipart.
async fn read_upload(request: Request, state: &AppState) -> Result<Upload, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();

    if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::invalid(rejection.body_text()))?;
        return read_multipart(multipart).await;
    }
    let ApiJson(body) = ApiJson::<DocumentBody>::from_request(request, state).await?;
    Ok(Upload {
        path: body.path,
        bytes: body.text.into_bytes(),
        collection: body.collection,
        tags: body.tags,
    })
}

async fn read_multipart(mut multipart: Multipart) -> Result<Upload, ApiError> {
    let mut file: Option<(Option<String>, Bytes)> = None;
    let mut path = None;
    let mut collection = None;
    let mut tags = Vec::new();

    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "file" => {
                let file_name = field.file_name().map(str::to_string);
                let bytes = field.bytes().await.map_err(multipart_error)?;
                file = Some((file_name, bytes));
            }
            "path" => path = Some(field.text().await.map_err(multipart_error)?),
            "collection" => collection = Some(field.text().await.map_err(multipart_error)?),
            "tags" | "tag" => {
                let text = field.text().await.map_err(multipart_error)?;
                tags.extend(text.split(',').map(|tag| tag.trim().to_string()));
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown multipart field {other:?}: use file, path, collection and tags"
                )));
            }
        }
    }

    let Some((file_name, bytes)) = file else {
        return Err(ApiError::invalid("the multipart body has no `file` part"));
    };
    let Some(path) = path.or(file_name) else {
        return Err(ApiError::invalid(
            "the `file` part has no file name and no `path` part gives one",
        ));
    };
    Ok(Upload {
        path,
        bytes: bytes.to_vec(),
        collection,
        tags,
    })
}

fn multipart_error(error: axum::extract::multipart::MultipartError) -> ApiError {
    body_rejection(error.status(), error.body_text())
}

/// Writes the upload under the uploads directory and ingests it.
async fn store_upload(
    state: &AppState,
    principal: &Principal,
    upload: Upload,
) -> Result<Response, ApiError> {
    let collection = state.collection(principal, upload.collection.as_deref())?;
    let source_path = checked_path(&upload.path)?;
    let kind = document_kind(Path::new(&source_path)).ok_or_else(|| {
        ApiError::unprocessable(format!(
            "{source_path:?}: grounded reads Markdown, HTML, plain text and code; this extension is none of them"
        ))
    })?;

    let engine = state.engine();
    let previous = engine
        .store
        .find_document(&collection, &source_path)
        .await?;
    let uploads = &state.config().uploads_dir;
    let incoming = write_incoming(uploads, &upload.bytes).await?;

    let options = IngestOptions {
        collection: collection.clone(),
        tags: upload.tags,
        prune: false,
        ..state.config().ingest.clone()
    };
    let ingestor = Ingestor::new(
        engine.embedder.as_ref(),
        engine.store.as_ref(),
        engine.index.as_ref(),
    );
    let source = SourceFile {
        path: incoming.to_path_buf(),
        source_path: source_path.clone(),
        kind,
    };
    let report = ingestor.run_files(&[source], &options, &NoProgress).await?;
    metrics::record_cache(report.embeddings_cached, report.embeddings_computed);
    record_spend(
        state,
        principal,
        "/v1/documents",
        &[upload_spend(state, &report)],
    )
    .await;

    // A refused upload leaves nothing behind: the incoming file goes with
    // `incoming`, and the message names the upload, not the server's disk.
    if let Some(failure) = report.failures.first().or(report.skipped.first()) {
        let message = failure
            .error
            .replace(&incoming.display().to_string(), &source_path);
        return Err(ApiError::unprocessable(message));
    }
    keep_upload(incoming, uploads, &collection, &source_path).await;

    let document = engine
        .store
        .find_document(&collection, &source_path)
        .await?
        .ok_or_else(|| {
            ApiError::internal(format!(
                "{source_path:?} was ingested but is not in the store"
            ))
        })?;

    let status = upload_status(previous.as_ref(), &document);
    let code = match status {
        UploadStatus::Created => StatusCode::CREATED,
        UploadStatus::Updated | UploadStatus::Unchanged => StatusCode::OK,
    };
    let body = UploadResponse {
        status,
        document: DocumentInfo::from(&document),
        embeddings_computed: report.embeddings_computed,
    };
    Ok((code, Json(body)).into_response())
}

/// The embedding tokens of an upload: the share of its chunks' tokens that
/// were embedded rather than found in the cache.
fn upload_spend(state: &AppState, report: &IngestReport) -> Spend {
    let embedded = report.embeddings_computed;
    let all = embedded + report.embeddings_cached;
    let tokens = (report.tokens * embedded).checked_div(all).unwrap_or(0);
    Spend {
        model: state.engine().embedder.model_id().to_owned(),
        embedding_tokens: tokens as u64,
        ..Spend::default()
    }
}

fn upload_status(previous: Option<&Document>, document: &Document) -> UploadStatus {
    match previous {
        None => UploadStatus::Created,
        Some(previous) if previous.content_hash.is_empty() => UploadStatus::Created,
        Some(previous)
            if previous.content_hash == document.content_hash
                && previous.settings_hash == document.settings_hash =>
        {
            UploadStatus::Unchanged
        }
        Some(_) => UploadStatus::Updated,
    }
}

/// A document path as given, if it is relative, `/`-separated and stays
/// inside its collection.
fn checked_path(path: &str) -> Result<String, ApiError> {
    let bad = |problem: &str| ApiError::unprocessable(format!("document path {path:?}: {problem}"));
    if path.is_empty() {
        return Err(bad("is empty"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(bad(&format!("is longer than {MAX_PATH_BYTES} bytes")));
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return Err(bad("holds a backslash or a control character"));
    }
    if path.starts_with('/') {
        return Err(bad("must be relative, like guides/setup.md"));
    }
    let all_normal = Path::new(path)
        .components()
        .all(|component| matches!(component, Component::Normal(_)));
    let odd_part = path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..");
    if !all_normal || odd_part {
        return Err(bad("must not hold empty, `.` or `..` parts"));
    }
    if path.split('/').any(|part| part.len() > MAX_NAME_BYTES) {
        return Err(bad(&format!(
            "has a part longer than {MAX_NAME_BYTES} bytes"
        )));
    }
    if path.starts_with(".incoming/") {
        return Err(bad(
            "must not start with .incoming/, which the server uses itself",
        ));
    }
    Ok(path.to_string())
}

/// Writes the bytes to a new file under `<uploads>/.incoming/`, removed when
/// the returned path is dropped unless [`keep_upload`] moves it into place.
async fn write_incoming(uploads: &Path, bytes: &[u8]) -> Result<tempfile::TempPath, ApiError> {
    let dir = uploads.join(".incoming");
    let bytes = bytes.to_vec();
    let written = tokio::task::spawn_blocking(move || -> std::io::Result<tempfile::TempPath> {
        std::fs::create_dir_all(&dir)?;
        let mut file = tempfile::NamedTempFile::new_in(&dir)?;
        std::io::Write::write_all(&mut file, &bytes)?;
        file.as_file().sync_all()?;
        Ok(file.into_temp_path())
    })
    .await
    .map_err(|error| ApiError::internal(format!("the upload writer failed: {error}")))?;
    written.map_err(|error| {
        tracing::error!(dir = %uploads.display(), %error, "cannot write an upload");
        ApiError::internal("the server cannot store uploads right now")
    })
}

/// Moves an ingested upload to `<uploads>/<collection>/<path>`, where a
/// later delete finds it. The document is stored whether or not this works.
async fn keep_upload(
    incoming: tempfile::TempPath,
    uploads: &Path,
    collection: &str,
    source_path: &str,
) {
    let target = uploads.join(collection).join(source_path);
    let moved = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)?;
        }
        incoming.persist(&target).map_err(|error| error.error)
    })
    .await;
    if !matches!(moved, Ok(Ok(()))) {
        tracing::warn!(source_path, "an ingested upload could not be kept on disk");
    }
}

/// Buffers a response so that it can be kept for replay.
async fn keep(response: Response) -> Result<(Response, Stored), ApiError> {
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|error| ApiError::internal(format!("cannot buffer the response: {error}")))?;
    let stored = Stored {
        status: parts.status,
        body: bytes.clone(),
    };
    Ok((
        Response::from_parts(parts, axum::body::Body::from(bytes)),
        stored,
    ))
}

fn replay(stored: Stored) -> Response {
    let mut response = (
        stored.status,
        [(header::CONTENT_TYPE, "application/json")],
        stored.body,
    )
        .into_response();
    response
        .headers_mut()
        .insert(idempotency::REPLAYED_HEADER, replayed_header());
    response
}

/// Lists the documents of a collection, by path.
#[utoipa::path(
    get,
    path = "/v1/documents",
    tag = "documents",
    params(CollectionQuery),
    responses(
        (status = 200, description = "The collection's documents", body = DocumentList),
        (status = 400, description = "An unknown query parameter", body = ErrorBody),
        (status = 422, description = "An invalid collection name", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(query): ApiQuery<CollectionQuery>,
) -> Result<Json<DocumentList>, ApiError> {
    let collection = state.collection_name(&principal, query.collection.as_deref())?;
    let documents = if principal.sees(&collection) {
        state.engine().store.list_documents(&collection).await?
    } else {
        Vec::new()
    };
    Ok(Json(DocumentList {
        collection,
        documents: documents.iter().map(DocumentInfo::from).collect(),
    }))
}

/// Deletes a document: its points, its chunks and its record, and its
/// uploaded file when it came by upload.
#[utoipa::path(
    delete,
    path = "/v1/documents/{id}",
    tag = "documents",
    params(("id" = Uuid, Path, description = "The document's id"), CollectionQuery),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "An id that is not a UUID", body = ErrorBody),
        (status = 404, description = "No such document in the collection", body = ErrorBody),
        (status = 409, description = "An ingest is writing the document; try again", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    UrlPath(id): UrlPath<String>,
    ApiQuery(query): ApiQuery<CollectionQuery>,
) -> Result<StatusCode, ApiError> {
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::invalid(format!("{id:?} is not a document id (a UUID)")))?;
    let collection = state.collection_name(&principal, query.collection.as_deref())?;
    let engine = state.engine();
    let documents = if principal.sees(&collection) {
        engine.store.list_documents(&collection).await?
    } else {
        Vec::new()
    };
    let document = documents
        .into_iter()
        .find(|document| document.id == DocumentId(id))
        .ok_or_else(|| {
            ApiError::not_found(format!("no document {id} in collection {collection:?}"))
        })?;

    let ingestor = Ingestor::new(
        engine.embedder.as_ref(),
        engine.store.as_ref(),
        engine.index.as_ref(),
    );
    if !ingestor.remove(&document).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "document_busy",
            format!(
                "an ingest is writing {:?}; try again when it is done",
                document.source_path
            ),
        ));
    }
    remove_uploaded_file(
        &state.config().uploads_dir,
        &collection,
        &document.source_path,
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the file an upload left, if the document came by upload.
async fn remove_uploaded_file(uploads: &Path, collection: &str, source_path: &str) {
    if checked_path(source_path).is_err() {
        return;
    }
    let file = uploads.join(collection).join(source_path);
    match tokio::fs::remove_file(&file).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(file = %file.display(), %error, "cannot remove an uploaded file")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_paths_must_stay_inside_their_collection() {
        assert_eq!(
            checked_path("guides/setup.md").expect("fine"),
            "guides/setup.md"
        );
        let long_name = format!("{}.md", "a".repeat(300));
        for bad in [
            long_name.as_str(),
            "a/./b.md",
            ".incoming/x.md",
            "",
            "/etc/passwd.md",
            "../up.md",
            "a/../b.md",
            "a//b.md",
            "./a.md",
            "a\\b.md",
            "a\nb.md",
        ] {
            let error = checked_path(bad).expect_err(bad);
            assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        }
    }
}
