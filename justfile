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

# The benchmarks of bench/README.md, one after another, each printing its
# tables and writing them to bench/results/<name>.md: ingest and search on
# the Rust book and SciFact (pipeline), POST /v1/search under load (http,
# on the collection pipeline leaves), Qdrant Edge at 10k and 100k points
# (scale; GROUNDED_BENCH_SCALE=1000000 for a run of hours). About 15
# minutes on two cores, most of it the cold SciFact ingest.
bench:
    cargo bench --workspace --bench pipeline
    cargo bench --workspace --bench http
    cargo bench --workspace --bench scale

# The same on small inputs, in minutes, written under target/bench-quick
# instead of bench/results: to check that the benchmarks run.
bench-quick:
    GROUNDED_BENCH_LIMIT=200 GROUNDED_BENCH_QUERIES=100 GROUNDED_BENCH_RESULTS=target/bench-quick \
        cargo bench --workspace --bench pipeline
    GROUNDED_BENCH_LIMIT=200 GROUNDED_BENCH_SECONDS=3 GROUNDED_BENCH_RESULTS=target/bench-quick \
        cargo bench --workspace --bench http
    GROUNDED_BENCH_SCALE=10000 GROUNDED_BENCH_RESULTS=target/bench-quick \
        cargo bench --workspace --bench scale

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

# Retrieval quality (nDCG@10, Recall@10 and @100, MRR@10, MAP@100, latency)
# per search mode on BEIR SciFact; the report is also written to
# .grounded/eval/runs/ as Markdown and JSON. Extra flags pass through
# (`just eval --answers 20 --llm extractive`).
eval *flags:
    cargo run --release -- eval --dataset ../shared/data/scifact --split train {{flags}}

# Everything CI does.
ci:
    bash .ci/run

# Load on POST /v1/search: 32 connections for 30 s against a running
# `grounded serve` that holds the demo's collection (needs wrk). `queries`
# is `repeat` (eight queries in turn, mostly from the query cache) or
# `unique` (every query embedded).
load url="http://127.0.0.1:8080" collection="rust-book" queries="repeat":
    wrk --threads 2 --connections 32 --duration 30s --latency -s scripts/load/search.lua {{url}} -- {{collection}} {{queries}}
