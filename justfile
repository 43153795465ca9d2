# Recipes for working on grounded. The README's two commands need no `just`.

# Ingest the Rust book and search it.
demo:
    cargo run --release -- demo

# Every test, as CI runs them.
test:
    ./scripts/test

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Ingest throughput and search latency on the Rust book.
bench:
    cargo bench --workspace --bench pipeline

# Everything CI does.
ci:
    bash .ci/run
