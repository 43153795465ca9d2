//! One module per subcommand.

pub mod ask;
pub mod cache;
pub mod collections;
pub mod demo;
pub mod eval;
pub mod ingest;
pub mod keys;
pub mod migrate;
pub mod search;
pub mod serve;
pub mod usage;
