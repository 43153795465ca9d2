//! `grounded usage`: the usage ledger as a table by day, principal, route
//! and model, with totals and a cost estimated from a price table (see
//! [`grounded_cli::prices`]).
//!
//! The ledger is what the HTTP service recorded; this command only reads
//! it, so it needs no server, and it opens the store alone (no index, no
//! model).

use grounded_cli::prices::{CostEstimate, PriceTable, TokenCounts};
use grounded_store::UsageRecord;
use serde::Serialize;

use crate::cli::{GlobalArgs, UsageArgs};
use crate::commands::keys::key_id;
use crate::context::open_metadata_store;

/// The table's columns; those from [`FIRST_NUMBER`] on are numbers,
/// aligned right.
const HEADER: [&str; 9] = [
    "day",
    "principal",
    "route",
    "model",
    "requests",
    "prompt",
    "completion",
    "embedding",
    "cost (USD)",
];
const FIRST_NUMBER: usize = 4;

/// Decimals of a cost in USD as people read it.
const COST_DECIMALS: usize = 6;

pub async fn run(global: &GlobalArgs, args: UsageArgs) -> anyhow::Result<()> {
    let prices = PriceTable::load(args.prices.as_deref())?;
    let principal = args.key.as_deref().map(key_id).transpose()?;

    let store = open_metadata_store(global).await?;
    let rows = store
        .usage(principal.as_deref(), args.since.as_deref())
        .await;
    let location = store.location().to_owned();
    store.close().await;

    let report = UsageReport::new(rows?, &prices, principal, args.since);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report, &location);
    }
    Ok(())
}

/// What `usage --json` prints.
#[derive(Debug, Serialize)]
struct UsageReport {
    /// The `--key` asked for, if any.
    key: Option<String>,
    /// The `--since` asked for, if any.
    since: Option<String>,
    rows: Vec<UsageRow>,
    totals: Counts,
    /// Models of rows that had no price, counted as costing 0.
    unpriced_models: Vec<String>,
}

/// One ledger row with its cost.
#[derive(Debug, Serialize)]
struct UsageRow {
    day: String,
    principal: String,
    route: String,
    /// Empty when the request used no model.
    model: String,
    #[serde(flatten)]
    counts: Counts,
}

/// Requests, tokens and their estimated cost.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Counts {
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    embedding_tokens: u64,
    cost_usd: f64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.requests += other.requests;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.embedding_tokens += other.embedding_tokens;
        self.cost_usd += other.cost_usd;
    }

    /// The numeric cells of a table row, in [`HEADER`] order.
    fn cells(&self) -> [String; 5] {
        [
            self.requests.to_string(),
            self.prompt_tokens.to_string(),
            self.completion_tokens.to_string(),
            self.embedding_tokens.to_string(),
            format!("{:.COST_DECIMALS$}", self.cost_usd),
        ]
    }
}

impl UsageReport {
    fn new(
        records: Vec<UsageRecord>,
        prices: &PriceTable,
        key: Option<String>,
        since: Option<String>,
    ) -> Self {
        let mut estimate = CostEstimate::default();
        let mut totals = Counts::default();
        let mut rows = Vec::with_capacity(records.len());

        for record in records {
            let tokens = TokenCounts {
                prompt: record.prompt_tokens,
                completion: record.completion_tokens,
                embedding: record.embedding_tokens,
            };
            let counts = Counts {
                requests: record.requests,
                prompt_tokens: record.prompt_tokens,
                completion_tokens: record.completion_tokens,
                embedding_tokens: record.embedding_tokens,
                cost_usd: estimate.add(prices, &record.model, &tokens),
            };
            totals.add(&counts);
            rows.push(UsageRow {
                day: record.day,
                principal: record.principal,
                route: record.route,
                model: record.model,
                counts,
            });
        }

        UsageReport {
            key,
            since,
            rows,
            totals,
            unpriced_models: estimate.unpriced.into_iter().collect(),
        }
    }
}

fn print_report(report: &UsageReport, location: &str) {
    if report.rows.is_empty() {
        println!("no usage recorded{} in {location}", scope_words(report));
        return;
    }

    for line in table_lines(report) {
        println!("{}", line.trim_end());
    }
    if !report.unpriced_models.is_empty() {
        println!(
            "no price for: {} (counted as 0; give prices with --prices FILE or GROUNDED_PRICES)",
            report.unpriced_models.join(", ")
        );
    }
    println!("costs are estimates from list prices, not a bill");
}

/// ` for key X since D`, as far as the report was narrowed.
fn scope_words(report: &UsageReport) -> String {
    let mut words = String::new();
    if let Some(key) = &report.key {
        words.push_str(&format!(" for {key}"));
    }
    if let Some(since) = &report.since {
        words.push_str(&format!(" since {since}"));
    }
    words
}

/// The header, one line per row, and the totals, in aligned columns.
fn table_lines(report: &UsageReport) -> Vec<String> {
    let mut cells: Vec<Vec<String>> = vec![HEADER.iter().map(|h| (*h).to_owned()).collect()];
    for row in &report.rows {
        let model = if row.model.is_empty() {
            "-"
        } else {
            &row.model
        };
        let mut line = vec![
            row.day.clone(),
            row.principal.clone(),
            row.route.clone(),
            model.to_owned(),
        ];
        line.extend(row.counts.cells());
        cells.push(line);
    }
    let mut total = vec![
        "total".to_owned(),
        String::new(),
        String::new(),
        String::new(),
    ];
    total.extend(report.totals.cells());
    cells.push(total);

    aligned(&cells)
}

/// Rows of cells padded to their column's width: text to the left,
/// numbers to the right.
fn aligned(cells: &[Vec<String>]) -> Vec<String> {
    let columns = cells.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            let width = |row: &Vec<String>| row[column].chars().count();
            cells.iter().map(width).max().unwrap_or(0)
        })
        .collect();

    let line = |row: &Vec<String>| {
        let padded = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| {
                if i >= FIRST_NUMBER {
                    format!("{cell:>width$}")
                } else {
                    format!("{cell:<width$}")
                }
            });
        padded.collect::<Vec<_>>().join("  ")
    };
    cells.iter().map(line).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(principal: &str, model: &str, prompt: u64, completion: u64) -> UsageRecord {
        UsageRecord {
            principal: principal.to_owned(),
            route: "/v1/answer".to_owned(),
            model: model.to_owned(),
            day: "2025-01-31".to_owned(),
            requests: 2,
            prompt_tokens: prompt,
            completion_tokens: completion,
            embedding_tokens: 0,
        }
    }

    #[test]
    fn report_prices_rows_and_sums_totals() {
        let records = vec![
            record("abcdefghijkl", "gpt-4o-mini", 1_000_000, 1_000_000),
            record("abcdefghijkl", "mystery", 10, 10),
        ];

        let report = UsageReport::new(records, &PriceTable::built_in(), None, None);

        assert!((report.rows[0].counts.cost_usd - 0.75).abs() < 1e-12);
        assert_eq!(report.rows[1].counts.cost_usd, 0.0);
        assert_eq!(report.totals.requests, 4);
        assert_eq!(report.totals.prompt_tokens, 1_000_010);
        assert!((report.totals.cost_usd - 0.75).abs() < 1e-12);
        assert_eq!(report.unpriced_models, ["mystery"]);
    }

    #[test]
    fn table_columns_line_up() {
        let records = vec![record("abcdefghijkl", "gpt-4o-mini", 12, 3)];
        let report = UsageReport::new(records, &PriceTable::built_in(), None, None);

        let lines = table_lines(&report);

        assert_eq!(lines.len(), 3);
        let lengths: Vec<usize> = lines.iter().map(|l| l.chars().count()).collect();
        assert!(lengths.windows(2).all(|w| w[0] == w[1]), "{lines:#?}");
        assert!(lines[2].starts_with("total"), "{lines:#?}");
        assert!(lines[1].ends_with("0.000004"), "{lines:#?}");
    }

    #[test]
    fn json_rows_are_flat() {
        let records = vec![record("abcdefghijkl", "", 0, 0)];
        let report = UsageReport::new(records, &PriceTable::built_in(), None, None);

        let json = serde_json::to_value(&report).unwrap();

        assert_eq!(json["rows"][0]["requests"], 2);
        assert_eq!(json["rows"][0]["cost_usd"], 0.0);
        assert_eq!(json["totals"]["requests"], 2);
        assert_eq!(json["unpriced_models"], serde_json::json!([]));
    }
}
