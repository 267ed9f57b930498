#!/usr/bin/env python3
"""Proves vdb-embedder's training-data files load in the real libraries.

  torch:      plain torch.load(path) (weights_only, the default) gives a float32 [N, D] tensor,
              and path's .labels file has one label per line, in order
  tensorflow: tf.data.TFRecordDataset(path) parsed as tf.train.Example with features
              embedding (float list, D) and label (bytes)

Both must hold the same vectors and labels, the labels must be the documents' --label-field,
and every vector must match the reference (base.fvecs, sentence-transformers) at cosine >=
0.999. Run by scripts/test.sh's embedder tier after `vdb-embedder export`.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def read_fvecs(path, n):
    import numpy as np

    raw = np.fromfile(path, dtype=np.int32)
    dim = raw[0]
    return raw.reshape(-1, dim + 1)[:n, 1:].view(np.float32)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--torch", required=True, type=Path)
    ap.add_argument("--tfrecord", required=True, type=Path)
    ap.add_argument("--dataset", required=True, type=Path, help="the debian-minilm directory")
    ap.add_argument("--label-field", default="section")
    a = ap.parse_args()

    import numpy as np
    import torch

    tensor = torch.load(a.torch)  # the default: weights_only=True
    assert isinstance(tensor, torch.Tensor), f"torch.load gave {type(tensor)}"
    assert tensor.dtype == torch.float32 and tensor.dim() == 2, f"{tensor.dtype} {tensor.shape}"
    n, dim = tensor.shape
    labels = a.torch.with_suffix(".labels").read_text().split("\n")
    assert labels[-1] == "", "the .labels file ends with a newline"
    labels = labels[:-1]
    assert len(labels) == n, f"{len(labels)} labels for {n} vectors"

    import tensorflow as tf

    spec = {
        "embedding": tf.io.FixedLenFeature([dim], tf.float32),
        "label": tf.io.FixedLenFeature([], tf.string),
    }
    records = list(tf.data.TFRecordDataset(str(a.tfrecord)).map(lambda r: tf.io.parse_single_example(r, spec)))
    assert len(records) == n, f"{len(records)} TFRecord examples for {n} tensor rows"
    tf_vectors = np.stack([r["embedding"].numpy() for r in records])
    tf_labels = [r["label"].numpy().decode() for r in records]
    assert np.array_equal(tf_vectors, tensor.numpy()), "TFRecord and tensor vectors differ"
    assert tf_labels == labels, "TFRecord and .labels labels differ"

    with open(a.dataset / "docs.jsonl") as f:
        want = [str(json.loads(line)[a.label_field]) for _, line in zip(range(n), f)]
    assert labels == want, "labels are not the documents' labels in order"
    reference = read_fvecs(a.dataset / "base.fvecs", n)
    cos = (tensor.numpy() * reference).sum(1)
    print(
        json.dumps(
            {
                "rows": int(n),
                "dimension": int(dim),
                "torch": torch.__version__,
                "tensorflow": tf.__version__,
                "min_cosine_vs_base": round(float(cos.min()), 6),
            }
        )
    )
    if cos.min() < 0.999:
        sys.exit(f"check_export: vector {int(cos.argmin())} has cosine {cos.min()} to the reference")
    print("check_export: ok (torch.load and tf.data.TFRecordDataset read the files)")


if __name__ == "__main__":
    main()
