//! What commands print for people, and the JSON shapes they print for machines.

use grounded_core::{Answer, ChunkLocation, Hit};
use grounded_ingest::IngestReport;
use serde_json::{Value, json};

/// How much of a hit's text a person sees.
const SNIPPET_CHARS: usize = 320;

pub fn print_ingest_report(report: &IngestReport) {
    for failure in &report.failures {
        println!("failed: {} ({})", failure.source_path, failure.error);
    }
    println!("{}", ingest_summary(report));
}

/// The one summary line of an ingest run.
pub fn ingest_summary(report: &IngestReport) -> String {
    format!(
        "ingested into {:?}: {} files seen; documents {} new, {} changed, {} unchanged, \
         {} removed, {} skipped, {} failed; {} chunks ({} tokens); embeddings {} computed, \
         {} from cache; {:.1} s, {:.1} chunks/s",
        report.collection,
        report.files_seen,
        report.documents_new,
        report.documents_changed,
        report.documents_unchanged,
        report.documents_removed,
        report.documents_skipped,
        report.documents_failed,
        report.chunks,
        report.tokens,
        report.embeddings_computed,
        report.embeddings_cached,
        report.elapsed_ms / 1000.0,
        report.chunks_per_second(),
    )
}

pub fn print_hits(query: &str, hits: &[Hit]) {
    println!("search: {query}");
    if hits.is_empty() {
        println!("  no hits");
    }
    for (rank, hit) in hits.iter().enumerate() {
        println!(
            "{:>2}. {:.3}  {}",
            rank + 1,
            hit.score,
            location_line(&hit.source_path, &hit.location)
        );
        println!("      {}", snippet(&hit.text));
    }
}

pub fn print_answer(question: &str, answer: &Answer) {
    println!("question: {question}");
    println!("answer ({}):", answer.produced_by);
    println!("  {}", answer.text);
    if !answer.citations.is_empty() {
        println!("sources:");
    }
    for citation in &answer.citations {
        println!(
            "  [{}] {}",
            citation.number,
            location_line(&citation.source_path, &citation.location)
        );
    }
}

/// `path:12-40#anchor — Section > Subsection`
pub fn location_line(source_path: &str, location: &ChunkLocation) -> String {
    let mut line = format!(
        "{source_path}:{}-{}",
        location.line_start, location.line_end
    );
    if let Some(anchor) = &location.anchor {
        line.push('#');
        line.push_str(anchor);
    }
    if !location.section.is_empty() {
        line.push_str(" — ");
        line.push_str(&location.section.join(" > "));
    }
    line
}

/// The JSON printed by `search --json`.
pub fn hits_json(query: &str, hits: &[Hit]) -> Value {
    let hits: Vec<Value> = hits
        .iter()
        .enumerate()
        .map(|(rank, hit)| {
            json!({
                "rank": rank + 1,
                "score": hit.score,
                "chunk_id": hit.chunk_id,
                "document_id": hit.document_id,
                "source_path": hit.source_path,
                "kind": hit.kind,
                "title": hit.title,
                "line_start": hit.location.line_start,
                "line_end": hit.location.line_end,
                "section": hit.location.section,
                "anchor": hit.location.anchor,
                "text": hit.text,
            })
        })
        .collect();
    json!({ "query": query, "hits": hits })
}

fn snippet(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}
