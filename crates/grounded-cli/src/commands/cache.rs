//! `grounded cache export|import`: cached embeddings as a file, so that a
//! corpus embedded with one store (a laptop's SQLite) need not be embedded
//! again with another (a team's Postgres).
//!
//! The file is JSON Lines: a header line naming the format, then one line per
//! embedding with its model id, text hash, dimension and vector. The vector
//! is the little-endian `f32` bytes both stores keep, in base64, so that
//! values survive the trip bit for bit.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use grounded_embed::MiniLm;
use grounded_store::{CacheKey, CachedEmbedding, MetadataStore, vector_bytes};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::cli::{CacheCommand, GlobalArgs};
use crate::context::open_metadata_store;

/// The format named by the header line; raised when lines change meaning.
const FORMAT: &str = "grounded-embeddings";
const FORMAT_VERSION: u32 = 1;

/// Embeddings read from or written to the store at once.
const PAGE: usize = 1000;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Line {
    model_id: String,
    text_hash: String,
    dimension: usize,
    vector: String,
}

pub async fn run(global: &GlobalArgs, command: CacheCommand) -> anyhow::Result<()> {
    let store = open_metadata_store(global).await?;
    let result = match command {
        CacheCommand::Export { file } => export(store.as_ref(), &file).await,
        CacheCommand::Import { file } => import(store.as_ref(), &file).await,
    };
    store.close().await;
    result
}

async fn export(store: &dyn MetadataStore, file: &Path) -> anyhow::Result<()> {
    let mut out = writer(file)?;
    let header = Header {
        format: FORMAT.into(),
        version: FORMAT_VERSION,
    };
    writeln!(out, "{}", serde_json::to_string(&header)?)?;

    let mut written = 0;
    let mut after: Option<CacheKey> = None;
    loop {
        let page = store.cached_embeddings(after.as_ref(), PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        for entry in &page {
            let line = Line {
                model_id: entry.key.model_id.clone(),
                text_hash: entry.key.text_hash.clone(),
                dimension: entry.vector.len(),
                vector: BASE64.encode(vector_bytes::encode(&entry.vector)),
            };
            writeln!(out, "{}", serde_json::to_string(&line)?)?;
        }
        written += page.len();
    }
    out.flush()
        .with_context(|| format!("failed to write {}", file.display()))?;

    info!(embeddings = written, database = store.location(), file = %file.display(), "cache exported");
    eprintln!(
        "exported {written} embeddings from {} to {}",
        store.location(),
        shown(file, "standard output")
    );
    Ok(())
}

/// Imports page by page. Each page is stored whole or not at all, and an
/// entry is content-addressed, so a file that fails halfway leaves only
/// correct embeddings behind and can be imported again. Every vector of a
/// model must have that model's dimension: the built-in model's own, or
/// that of its vectors already in the store, or else of its first in the file.
async fn import(store: &dyn MetadataStore, file: &Path) -> anyhow::Result<()> {
    let name = file.display();
    let mut lines = reader(file)?.lines().enumerate();
    match lines.next() {
        Some((_, line)) => check_header(
            &line.with_context(|| format!("failed to read {name}"))?,
            file,
        )?,
        None => bail!("{name} is empty: expected a file written by `grounded cache export`"),
    }

    let mut dimensions = Dimensions::default();
    let (mut read, mut new) = (0, 0);
    let mut page: Vec<CachedEmbedding> = Vec::with_capacity(PAGE);
    for (index, line) in lines {
        let line = line.with_context(|| format!("failed to read {name}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{name} line {}", index + 1);
        let entry = parse_line(&line).with_context(at)?;
        dimensions
            .check(store, &entry.key.model_id, entry.vector.len())
            .await
            .with_context(at)?;
        page.push(entry);
        if page.len() == PAGE {
            read += page.len();
            new += store_page(store, std::mem::take(&mut page)).await?;
        }
    }
    read += page.len();
    new += store_page(store, page).await?;

    info!(embeddings = read, new, database = store.location(), file = %name, "cache imported");
    eprintln!(
        "imported {read} embeddings from {} into {}: {new} new, {} already cached",
        shown(file, "standard input"),
        store.location(),
        read - new
    );
    Ok(())
}

/// The dimension of each model's vectors: the built-in model's own, or as
/// the store or else the file first gives it.
#[derive(Default)]
struct Dimensions(std::collections::HashMap<String, usize>);

impl Dimensions {
    async fn check(
        &mut self,
        store: &dyn MetadataStore,
        model_id: &str,
        dimension: usize,
    ) -> anyhow::Result<()> {
        if !self.0.contains_key(model_id) {
            let known = match MiniLm::known_dimension(model_id) {
                Some(known) => known,
                None => store.cached_dimension(model_id).await?.unwrap_or(dimension),
            };
            self.0.insert(model_id.to_owned(), known);
        }
        let known = self.0[model_id];
        if dimension != known {
            bail!(
                "a vector of dimension {dimension} for model {model_id}, whose vectors have \
                 dimension {known}"
            );
        }
        Ok(())
    }
}

/// A file as messages name it; `-` stands for `stdio`.
fn shown(file: &Path, stdio: &str) -> String {
    if file == Path::new("-") {
        return stdio.into();
    }
    file.display().to_string()
}

fn check_header(line: &str, file: &Path) -> anyhow::Result<()> {
    let header: Option<Header> = serde_json::from_str(line).ok();
    match header {
        Some(header) if header.format == FORMAT && header.version == FORMAT_VERSION => Ok(()),
        Some(header) if header.format == FORMAT => bail!(
            "{} is version {} of the embeddings format; this grounded reads version {FORMAT_VERSION}",
            file.display(),
            header.version
        ),
        _ => bail!(
            "{} is not an embeddings file written by `grounded cache export`",
            file.display()
        ),
    }
}

fn parse_line(line: &str) -> anyhow::Result<CachedEmbedding> {
    let line: Line = serde_json::from_str(line).context("not an embedding line")?;
    let is_hash =
        line.text_hash.len() == 64 && line.text_hash.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hash {
        bail!("text_hash {:?} is not a SHA-256 in hex", line.text_hash);
    }
    if line.model_id.is_empty() {
        bail!("model_id is empty");
    }
    let bytes = BASE64
        .decode(line.vector.as_bytes())
        .context("vector is not base64")?;
    if line.dimension == 0 || bytes.len() != line.dimension * 4 {
        bail!(
            "vector holds {} bytes, not the {} of dimension {}",
            bytes.len(),
            line.dimension * 4,
            line.dimension
        );
    }
    let vector = vector_bytes::decode(&bytes).unwrap_or_default();
    if vector.iter().any(|value| !value.is_finite()) {
        bail!("vector holds a value that is not a finite number");
    }
    if vector.iter().all(|value| *value == 0.0) {
        bail!("vector is all zeros, which no embedding model produces");
    }
    let key = CacheKey {
        model_id: line.model_id,
        text_hash: line.text_hash,
    };
    Ok(CachedEmbedding { key, vector })
}

/// Stores one page, one call per model; returns how many entries were new.
async fn store_page(
    store: &dyn MetadataStore,
    page: Vec<CachedEmbedding>,
) -> anyhow::Result<usize> {
    let mut new = 0;
    let mut by_model: std::collections::BTreeMap<String, Vec<(String, Vec<f32>)>> =
        std::collections::BTreeMap::new();
    for CachedEmbedding { key, vector } in page {
        by_model
            .entry(key.model_id)
            .or_default()
            .push((key.text_hash, vector));
    }
    for (model_id, entries) in by_model {
        new += store.put_embeddings(&model_id, &entries).await?;
    }
    Ok(new)
}

fn writer(file: &Path) -> anyhow::Result<Box<dyn Write>> {
    if file == Path::new("-") {
        return Ok(Box::new(BufWriter::new(std::io::stdout().lock())));
    }
    let created =
        File::create(file).with_context(|| format!("failed to create {}", file.display()))?;
    Ok(Box::new(BufWriter::new(created)))
}

fn reader(file: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if file == Path::new("-") {
        return Ok(Box::new(BufReader::new(std::io::stdin().lock())));
    }
    let opened = File::open(file).with_context(|| format!("failed to open {}", file.display()))?;
    Ok(Box::new(BufReader::new(opened)))
}
