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

# Postgres and a Qdrant server in Docker, waiting until both are healthy
# (see docker-compose.yml); the embedded default needs neither.
up:
    #!/usr/bin/env bash
    set -euo pipefail
    if ! docker compose version >/dev/null 2>&1; then
        echo "Docker with the compose plugin is not installed, so the servers cannot start here." >&2
        echo "grounded needs no server: 'cargo run --release -- demo' runs on the embedded default" >&2
        echo "(SQLite and Qdrant Edge in process)." >&2
        exit 1
    fi
    docker compose up -d --wait postgres qdrant
    echo "Postgres on 127.0.0.1:5433, Qdrant on 127.0.0.1:6334 (gRPC). Point grounded at them with:"
    echo "  export GROUNDED_DATABASE_URL=postgres://grounded:grounded@127.0.0.1:5433/grounded"
    echo "  export GROUNDED_QDRANT_URL=http://127.0.0.1:6334"

# Stops the servers of `just up`; their data stays in Docker volumes.
down:
    docker compose down

# Retrieval quality (nDCG@10, Recall@100) per search mode on BEIR SciFact.
eval:
    cargo run --release -- eval ../shared/data/scifact --split train

# Everything CI does.
ci:
    bash .ci/run

# Load on POST /v1/search: 32 connections for 30 s against a running
# `grounded serve` that holds the demo's collection (needs wrk). `queries`
# is `repeat` (eight queries in turn, mostly from the query cache) or
# `unique` (every query embedded).
load url="http://127.0.0.1:8080" collection="rust-book" queries="repeat":
    wrk --threads 2 --connections 32 --duration 30s --latency -s scripts/load/search.lua {{url}} -- {{collection}} {{queries}}
