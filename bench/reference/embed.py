"""Embedding throughput of sentence-transformers on PyTorch, the reference
that grounded's in-process encoder is measured against.

Reads texts (one JSON string a line), embeds them as
sentence-transformers does by default for all-MiniLM-L6-v2 (256 word-pieces,
mean pooling, normalised, batches of --batch-size sorted by length) on the
CPU with --threads threads, and prints one JSON object: the median of
--rounds timed runs after a warm-up, the real (unpadded) token count, and the
versions. With --vectors FILE it also writes the vectors of the last run as
little-endian float32, text after text, for the caller to compare.
"""

import argparse
import json
import statistics
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="directory of the model files")
    parser.add_argument("--texts", required=True, help="JSON Lines file of strings")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", help="JSON Lines file of short texts, embedded one at a time")
    parser.add_argument("--vectors", help="where to write the vectors as float32")
    args = parser.parse_args()

    import numpy
    import sentence_transformers
    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    model = sentence_transformers.SentenceTransformer(args.model, device="cpu")
    model.max_seq_length = 256

    texts = read_lines(args.texts)
    tokens = sum(
        len(ids)
        for ids in model.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    )

    def encode(batch, batch_size):
        return model.encode(
            batch,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )

    encode(texts[: args.batch_size], args.batch_size)
    times = []
    vectors = None
    for _ in range(args.rounds):
        started = time.perf_counter()
        vectors = encode(texts, args.batch_size)
        times.append(time.perf_counter() - started)

    report = {
        "implementation": "sentence-transformers",
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },
        "threads": torch.get_num_threads(),
        "texts": len(texts),
        "tokens": tokens,
        "seconds": statistics.median(times),
        "all_seconds": times,
    }

    if args.queries:
        queries = read_lines(args.queries)
        encode(queries[:4], 1)
        latencies = []
        for query in queries:
            started = time.perf_counter()
            encode([query], 1)
            latencies.append((time.perf_counter() - started) * 1000.0)
        report["query_ms"] = sorted(latencies)

    if args.vectors:
        numpy.asarray(vectors, dtype="<f4").tofile(args.vectors)

    print(json.dumps(report))
    return 0


def read_lines(path):
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


if __name__ == "__main__":
    sys.exit(main())
