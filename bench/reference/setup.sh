#!/usr/bin/env bash
# Creates the virtual environment of the reference embedder
# (sentence-transformers on PyTorch) for `cargo bench --bench embedding`,
# once. Its location is GROUNDED_BENCH_VENV, by default
# /var/tmp/grounded-bench-venv; the first run downloads about 6 GB.
set -euo pipefail

venv="${GROUNDED_BENCH_VENV:-/var/tmp/grounded-bench-venv}"
requirements="$(dirname "$0")/requirements.txt"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sentence_transformers' 2>/dev/null; then
    echo "reference environment ready: $venv" >&2
    exit 0
fi

if ! command -v python3 >/dev/null; then
    echo "python3 is not installed: the reference embedder cannot be set up" >&2
    exit 1
fi
echo "setting up the reference embedder in $venv (about 6 GB, once)" >&2
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements" || {
    echo "pip could not install $requirements into $venv" >&2
    exit 1
}
echo "reference environment ready: $venv" >&2
