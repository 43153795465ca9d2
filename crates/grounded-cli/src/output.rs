//! What commands print for people, and the JSON shapes they print for machines.

use std::path::Path;

use grounded_core::{ChunkLocation, Hit};
use grounded_ingest::IngestReport;
use grounded_query::AnswerOutcome;
use serde_json::{Value, json};

/// How much of a hit's text a person sees.
const SNIPPET_CHARS: usize = 320;

/// Skipped files listed by name before the rest are only counted.
const SKIPPED_SHOWN: usize = 5;

pub fn print_ingest_report(report: &IngestReport) {
    for failure in &report.failures {
        println!("failed: {}", failure.error);
    }
    for skipped in report.skipped.iter().take(SKIPPED_SHOWN) {
        println!(
            "skipped: {} ({})",
            display_path(&skipped.source_path),
            skipped.error
        );
    }
    if report.skipped.len() > SKIPPED_SHOWN {
        let more = report.skipped.len() - SKIPPED_SHOWN;
        println!("skipped: {more} more, each with its reason in `--json`");
    }
    if report.files_unsupported > 0 {
        let kinds: Vec<String> = report
            .unsupported_by_extension
            .iter()
            .map(|(extension, count)| format!(".{extension} {count}"))
            .collect();
        println!(
            "not read: {} files of types grounded does not ingest ({})",
            report.files_unsupported,
            kinds.join(", ")
        );
    }
    println!("{}", ingest_summary(report));
}

/// The one summary line of an ingest run.
pub fn ingest_summary(report: &IngestReport) -> String {
    let repaired = match report.documents_repaired {
        0 => String::new(),
        count => format!(" ({count} with points missing from the index)"),
    };
    format!(
        "ingested into {:?}: {} files seen; documents {} new, {} changed{repaired}, {} unchanged, \
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

pub fn print_answer(question: &str, outcome: &AnswerOutcome) {
    let answer = &outcome.answer;
    println!("question: {question}");
    println!("answer ({}):", answer.produced_by);
    println!("  {}", answer.text.replace('\n', "\n  "));
    if !answer.grounded {
        println!(
            "  (not grounded: this answer cites none of the sources, so the documents do not back it)"
        );
    }
    if outcome.removed_markers > 0 {
        println!(
            "  ({} citation marker(s) naming no source were removed)",
            outcome.removed_markers
        );
    }
    if outcome.finish_reason.as_deref() == Some("length") {
        println!("  (cut off: the answer reached --max-tokens)");
    }
    if outcome.attributed_markers > 0 {
        println!(
            "  ({} marker(s) added by attribution: sentences that cited nothing but restate that source)",
            outcome.attributed_markers
        );
    }
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
    if let Some(usage) = outcome.usage {
        println!(
            "tokens: {} in, {} out{}",
            usage.prompt_tokens,
            usage.completion_tokens,
            if usage.counted_locally {
                " (counted here)"
            } else {
                ""
            }
        );
    }
}

/// `path:12-40#anchor — Section > Subsection`
pub fn location_line(source_path: &str, location: &ChunkLocation) -> String {
    let path = display_path(source_path);
    let mut line = format!("{path}:{}-{}", location.line_start, location.line_end);
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

/// A source path as a person reads it: relative to the working directory when
/// it lies below it. JSON output always has the full path.
pub fn display_path(source_path: &str) -> String {
    let path = Path::new(source_path);
    let relative = std::env::current_dir().ok().and_then(|cwd| {
        path.strip_prefix(&cwd)
            .ok()
            .map(|rest| rest.display().to_string())
    });
    relative.unwrap_or_else(|| source_path.to_string())
}

fn snippet(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &flat[..cut]),
        None => flat,
    }
}
