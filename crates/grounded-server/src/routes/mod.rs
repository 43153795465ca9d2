//! One file per resource of the API.

pub mod answer;
pub mod audit;
pub mod documents;
pub mod health;
pub mod keys;
pub mod meta;
pub mod search;
pub mod usage;
