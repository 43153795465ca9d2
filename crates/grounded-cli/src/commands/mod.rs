//! One module per subcommand.

pub mod ask;
pub mod demo;
pub mod ingest;
pub mod search;
