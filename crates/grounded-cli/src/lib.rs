//! What the `grounded` binary shares with its benchmarks and tests: where
//! the Rust book that the demo and the benchmarks ingest is installed, and
//! which parts of it are not its current text; and the price table that
//! turns the usage ledger's tokens into an estimated cost.

pub mod book;
pub mod prices;
