//! What the `grounded` binary shares with its benchmarks: where the Rust book
//! that the demo and the benchmarks ingest is installed, and which parts of
//! it are not its current text.

pub mod book;
