//! What the usage ledger's tokens cost: a price table in USD per million
//! tokens by model, built in or read from a JSON file, and the arithmetic.
//!
//! The file is one JSON object from model id to its prices, each optional
//! and 0 when left out:
//!
//! ```json
//! {"gpt-4o-mini": {"prompt": 0.15, "completion": 0.60},
//!  "text-embedding-3-small": {"embedding": 0.02}}
//! ```
//!
//! The result is an estimate from list prices, not a bill: it knows nothing
//! of discounts, cached-input rates or batch pricing. A model the table does
//! not name costs 0 and is reported as unpriced, so that a missing price is
//! seen rather than silently summed as free.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

/// Tokens per unit of price: prices are per million tokens.
const TOKENS_PER_UNIT: f64 = 1_000_000.0;

/// The id prefix the OpenAI-compatible embedder gives its model ids
/// (`openai:text-embedding-3-small@1536`).
const OPENAI_EMBEDDER_PREFIX: &str = "openai:";

/// USD per million tokens of one model, by kind of token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Price {
    /// Input tokens of a chat model.
    pub prompt: f64,
    /// Output tokens of a chat model.
    pub completion: f64,
    /// Input tokens of an embedding model.
    pub embedding: f64,
}

impl Price {
    const fn chat(prompt: f64, completion: f64) -> Self {
        Price {
            prompt,
            completion,
            embedding: 0.0,
        }
    }

    const fn embedding(embedding: f64) -> Self {
        Price {
            prompt: 0.0,
            completion: 0.0,
            embedding,
        }
    }

    /// What `tokens` cost at this price, in USD.
    pub fn cost(&self, tokens: &TokenCounts) -> f64 {
        let units = |count: u64| count as f64 / TOKENS_PER_UNIT;
        units(tokens.prompt) * self.prompt
            + units(tokens.completion) * self.completion
            + units(tokens.embedding) * self.embedding
    }

    /// The first price that is negative or not a finite number, by name.
    fn invalid_part(&self) -> Option<(&'static str, f64)> {
        [
            ("prompt", self.prompt),
            ("completion", self.completion),
            ("embedding", self.embedding),
        ]
        .into_iter()
        .find(|(_, value)| !value.is_finite() || *value < 0.0)
    }
}

/// Tokens of one model, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCounts {
    pub prompt: u64,
    pub completion: u64,
    pub embedding: u64,
}

/// The built-in prices, USD per million tokens.
///
/// These are OpenAI's list prices when this was written; list prices
/// change, so a price file (`--prices`, `GROUNDED_PRICES`) overrides any
/// model named here. The models that run in process cost nothing.
const BUILT_IN: &[(&str, Price)] = &[
    ("gpt-4o", Price::chat(2.50, 10.00)),
    ("gpt-4o-mini", Price::chat(0.15, 0.60)),
    ("gpt-4.1", Price::chat(2.00, 8.00)),
    ("gpt-4.1-mini", Price::chat(0.40, 1.60)),
    ("gpt-4.1-nano", Price::chat(0.10, 0.40)),
    ("text-embedding-3-small", Price::embedding(0.02)),
    ("text-embedding-3-large", Price::embedding(0.13)),
    ("text-embedding-ada-002", Price::embedding(0.10)),
    (LOCAL_EMBEDDING_MODEL, Price::embedding(0.0)),
    (grounded_provider::local::MODEL_ID, Price::chat(0.0, 0.0)),
    (
        grounded_query::extractive::EXTRACTIVE,
        Price::chat(0.0, 0.0),
    ),
];

/// The id of the built-in embedder, all-MiniLM-L6-v2 run in process.
pub const LOCAL_EMBEDDING_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2@256";

/// Prices by model id.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<String, Price>,
}

impl PriceTable {
    /// The built-in prices alone.
    pub fn built_in() -> Self {
        let prices = BUILT_IN
            .iter()
            .map(|(model, price)| ((*model).to_owned(), *price))
            .collect();
        PriceTable { prices }
    }

    /// The built-in prices, with those of the file at `path`, when given,
    /// in place of the built-in ones for the models it names.
    ///
    /// # Errors
    /// When the file cannot be read or is not a valid price table; the
    /// message names the file and the problem.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut table = Self::built_in();
        let Some(path) = path else {
            return Ok(table);
        };

        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read price table {}", path.display()))?;
        let file = Self::parse(&text)
            .with_context(|| format!("invalid price table {}", path.display()))?;
        table.prices.extend(file.prices);
        Ok(table)
    }

    /// Parses a price table's JSON.
    ///
    /// # Errors
    /// When it is not one object of model ids to prices, a price has a
    /// field other than `prompt`, `completion` and `embedding`, or a price
    /// is negative.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let prices: BTreeMap<String, Price> = serde_json::from_str(text).context(
            "expected a JSON object of model ids to {\"prompt\", \"completion\", \"embedding\"} \
             prices in USD per million tokens",
        )?;

        for (model, price) in &prices {
            if model.trim().is_empty() {
                bail!("a model id is empty");
            }
            if let Some((part, value)) = price.invalid_part() {
                bail!("the {part} price of {model:?} is {value}: prices must be 0 or more");
            }
        }
        Ok(PriceTable { prices })
    }

    /// The price of `model`: its own entry, or else that of the model it
    /// names without the OpenAI embedder's `openai:` prefix and `@dimension`
    /// suffix. `None` when the table has neither.
    pub fn price(&self, model: &str) -> Option<&Price> {
        self.prices
            .get(model)
            .or_else(|| self.prices.get(base_model(model)))
    }
}

/// `model` without the `openai:` prefix and `@<digits>` suffix that the
/// OpenAI-compatible embedder adds to its ids.
fn base_model(model: &str) -> &str {
    let model = model.strip_prefix(OPENAI_EMBEDDER_PREFIX).unwrap_or(model);
    match model.rsplit_once('@') {
        Some((base, size)) if !size.is_empty() && size.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => model,
    }
}

/// Costs summed over ledger rows, with the models that had no price.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CostEstimate {
    /// USD, over every priced row.
    pub total: f64,
    /// Models of rows the table has no price for, counted as 0; sorted.
    pub unpriced: BTreeSet<String>,
}

impl CostEstimate {
    /// Adds the cost of `tokens` of `model` and returns it; 0 for an
    /// unpriced model, which is remembered, and for the empty model id of
    /// a row that used none.
    pub fn add(&mut self, table: &PriceTable, model: &str, tokens: &TokenCounts) -> f64 {
        if model.is_empty() {
            return 0.0;
        }
        let Some(price) = table.price(model) else {
            self.unpriced.insert(model.to_owned());
            return 0.0;
        };
        let cost = price.cost(tokens);
        self.total += cost;
        cost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(prompt: u64, completion: u64, embedding: u64) -> TokenCounts {
        TokenCounts {
            prompt,
            completion,
            embedding,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn cost_is_tokens_times_price_per_million() {
        let price = Price::chat(0.15, 0.60);

        assert!(close(price.cost(&tokens(1_000_000, 0, 0)), 0.15));
        assert!(close(price.cost(&tokens(2_000, 500, 0)), 0.0003 + 0.0003));
        assert!(close(price.cost(&tokens(0, 0, 1_000_000)), 0.0));
        assert!(close(
            Price::embedding(0.02).cost(&tokens(0, 0, 50_000)),
            0.001
        ));
        assert!(close(price.cost(&TokenCounts::default()), 0.0));
    }

    #[test]
    fn estimate_sums_priced_rows_and_names_unpriced_models() {
        let table = PriceTable::built_in();
        let mut estimate = CostEstimate::default();

        let chat = estimate.add(&table, "gpt-4o-mini", &tokens(1_000_000, 1_000_000, 0));
        let mystery = estimate.add(&table, "mystery-model", &tokens(5_000_000, 0, 0));
        let none = estimate.add(&table, "", &tokens(0, 0, 0));

        assert!(close(chat, 0.75));
        assert!(close(mystery, 0.0));
        assert!(close(none, 0.0));
        assert!(close(estimate.total, 0.75));
        assert_eq!(
            estimate.unpriced.into_iter().collect::<Vec<_>>(),
            ["mystery-model"]
        );
    }

    #[test]
    fn local_models_are_free_and_priced() {
        let table = PriceTable::built_in();

        for model in [
            LOCAL_EMBEDDING_MODEL,
            grounded_provider::local::MODEL_ID,
            grounded_query::extractive::EXTRACTIVE,
        ] {
            assert_eq!(table.price(model), Some(&Price::default()), "{model}");
        }
        assert!(grounded_embed::MiniLm::known_dimension(LOCAL_EMBEDDING_MODEL).is_some());
    }

    #[test]
    fn openai_embedder_ids_find_their_model_price() {
        let table = PriceTable::built_in();

        let price = table.price("openai:text-embedding-3-small@1536");

        assert_eq!(price, Some(&Price::embedding(0.02)));
        assert_eq!(
            base_model("openai:text-embedding-3-large"),
            "text-embedding-3-large"
        );
        assert_eq!(base_model("model@v2"), "model@v2");
        assert_eq!(table.price("openai:unknown@8"), None);
    }

    #[test]
    fn parse_reads_the_documented_shape_with_missing_parts_as_zero() {
        let text = r#"{"gpt-4o-mini": {"prompt": 0.15, "completion": 0.60},
                       "text-embedding-3-small": {"embedding": 0.02}}"#;

        let table = PriceTable::parse(text).unwrap();

        assert_eq!(table.price("gpt-4o-mini"), Some(&Price::chat(0.15, 0.60)));
        assert_eq!(
            table.price("text-embedding-3-small"),
            Some(&Price::embedding(0.02))
        );
        assert_eq!(table.price("gpt-4o"), None);
    }

    #[test]
    fn parse_refuses_malformed_tables_saying_why() {
        let cases = [
            ("[1, 2]", "expected a JSON object"),
            (r#"{"m": {"promt": 1}}"#, "unknown field `promt`"),
            (r#"{"m": {"prompt": "cheap"}}"#, "invalid type"),
            (
                r#"{"m": {"prompt": -1}}"#,
                "the prompt price of \"m\" is -1",
            ),
            (r#"{"": {"prompt": 1}}"#, "a model id is empty"),
            (r#"{"m": {"prompt": 1}"#, "EOF"),
        ];

        for (text, expected) in cases {
            let error = format!("{:#}", PriceTable::parse(text).unwrap_err());

            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn a_file_replaces_the_prices_of_the_models_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("prices.json");
        std::fs::write(
            &path,
            r#"{"gpt-4o-mini": {"prompt": 1}, "mine": {"completion": 2}}"#,
        )
        .unwrap();

        let table = PriceTable::load(Some(&path)).unwrap();

        assert_eq!(table.price("gpt-4o-mini"), Some(&Price::chat(1.0, 0.0)));
        assert_eq!(table.price("mine"), Some(&Price::chat(0.0, 2.0)));
        assert_eq!(table.price("gpt-4o"), Some(&Price::chat(2.50, 10.00)));
    }

    #[test]
    fn a_bad_or_missing_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "not json").unwrap();
        let missing = dir.path().join("missing.json");

        for path in [bad, missing] {
            let error = format!("{:#}", PriceTable::load(Some(&path)).unwrap_err());

            assert!(error.contains(&path.display().to_string()), "{error}");
        }
    }
}
