#!/usr/bin/env python3
"""Loads the debian-minilm dataset into VDB over HTTP (standard library only).

Usage: load_dataset.py URL TARGET [--limit N] [--batch N]
TARGET is a collection name (the router's /v1/collections/TARGET) or, with --shard, a local
shard of a shard node (/v1/shards/TARGET).
Reads $VDB_DATA_DIR/debian-minilm (default ../shared/data relative to the repository).
"""
import argparse
import json
import os
import struct
import sys
import time
import urllib.request


def fvecs(path):
    with open(path, "rb") as f:
        while True:
            head = f.read(4)
            if not head:
                return
            (dim,) = struct.unpack("<i", head)
            yield list(struct.unpack(f"<{dim}f", f.read(4 * dim)))


def call(method, url, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as r:
        return json.load(r)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("target")
    p.add_argument("--shard", action="store_true", help="TARGET is a local shard of a shard node")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--batch", type=int, default=500)
    a = p.parse_args()
    root = os.environ.get("VDB_DATA_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
    data = os.path.join(root, "debian-minilm")
    if not os.path.exists(os.path.join(data, "base.fvecs")):
        sys.exit(f"dataset missing at {data}: set VDB_DATA_DIR or run scripts/make-dataset.sh")
    points = f"{a.url}/v1/{'shards' if a.shard else 'collections'}/{a.target}/points"
    started, n, batch = time.time(), 0, []
    with open(os.path.join(data, "docs.jsonl")) as docs:
        for vec, line in zip(fvecs(os.path.join(data, "base.fvecs")), docs):
            if a.limit is not None and n >= a.limit:
                break
            d = json.loads(line)
            payload = {k: d[k] for k in ("package", "section", "priority", "installed_size")}
            batch.append({"id": d["id"], "vector": vec, "payload": payload})
            n += 1
            if len(batch) == a.batch:
                call("PUT", points, {"points": batch})
                batch = []
    if batch:
        call("PUT", points, {"points": batch})
    print(f"loaded {n} points in {time.time() - started:.1f}s")


if __name__ == "__main__":
    main()
