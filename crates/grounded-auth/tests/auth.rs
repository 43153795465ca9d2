//! The crate's integration tests, one binary: bearer tokens against real
//! signatures (`jwt.rs`), and the authenticator against an in-memory key
//! store (`authenticate.rs`).

mod authenticate;
mod jwt;
