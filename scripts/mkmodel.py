#!/usr/bin/env python3
"""Deterministic generator of a small, real Hugging Face model (or dataset) repository.

Usage:
  scripts/mkmodel.py OUTDIR [--seed N] [--kind model|dataset]

--kind model (the default) writes into OUTDIR:
  model.safetensors        a few float32 and int64 tensors (about 200 KB), seeded
  sub/extra.safetensors    two more small tensors (a nested path)
  config.json              a BERT-like configuration matching the tensors' shapes
  tokenizer.json           a small WordLevel tokenizer
  README.md                a model card with YAML front matter
--kind dataset writes:
  data/train.jsonl, data/test.jsonl   a few text rows
  data/features.safetensors           float32 features and int64 labels
  README.md                           a dataset card

The same arguments give byte-identical files. Prints one JSON object on stdout:
  {"dir": OUTDIR, "kind": KIND, "seed": N,
   "files": [{"path", "size", "sha256"}, ...],            (sorted by path)
   "tensors": {PATH: {NAME: {"dtype", "shape", "sha256"}}}}
where a tensor's sha256 is that of its little-endian bytes.

Needs numpy and safetensors (the test venv that scripts/setup.sh makes has both).
"""

import argparse
import hashlib
import json
import os
import sys

try:
    import numpy as np
    from safetensors.numpy import save_file
except ImportError as e:  # pragma: no cover - a setup problem, said plainly
    sys.exit(f"mkmodel: {e}; run it with the test venv's python (scripts/setup.sh)")

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [
    w
    for w in (
        "the a an ferry carries models across air gap safely verified signed bundle "
        "weights config tokenizer offline mirror hub revision commit file tensor"
    ).split()
]


def model_tensors(rng):
    vocab, hidden, positions, intermediate = 256, 128, 64, 96
    return {
        "embeddings.word_embeddings.weight": rng.standard_normal((vocab, hidden)).astype(
            "<f4"
        ),
        "embeddings.position_embeddings.weight": rng.standard_normal(
            (positions, hidden)
        ).astype("<f4"),
        "embeddings.position_ids": np.arange(positions, dtype="<i8").reshape(1, positions),
        "embeddings.LayerNorm.weight": np.ones(hidden, dtype="<f4"),
        "embeddings.LayerNorm.bias": np.zeros(hidden, dtype="<f4"),
        "encoder.layer.0.intermediate.dense.weight": rng.standard_normal(
            (intermediate, hidden)
        ).astype("<f4"),
        "encoder.layer.0.intermediate.dense.bias": rng.standard_normal(intermediate).astype(
            "<f4"
        ),
        "encoder.layer.0.output.dense.weight": rng.standard_normal(
            (hidden, intermediate)
        ).astype("<f4"),
        "pooler.dense.weight": rng.standard_normal((hidden, hidden)).astype("<f4"),
    }


def extra_tensors(rng):
    return {
        "classifier.weight": rng.standard_normal((16, 16)).astype("<f4"),
        "classifier.labels": np.arange(8, dtype="<i8") * 3,
    }


def dataset_tensors(rng):
    return {
        "features": rng.standard_normal((64, 32)).astype("<f4"),
        "labels": rng.integers(0, 4, size=64).astype("<i8"),
    }


def config_json():
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": 256,
        "hidden_size": 128,
        "intermediate_size": 96,
        "max_position_embeddings": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "torch_dtype": "float32",
        "transformers_version": "4.40.0",
    }


def tokenizer_json():
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {
                "id": i,
                "content": t,
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
            for i, t in enumerate(VOCAB[:5])
        ],
        "normalizer": {"type": "Lowercase"},
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {
            "type": "WordLevel",
            "vocab": {t: i for i, t in enumerate(VOCAB)},
            "unk_token": "[UNK]",
        },
    }


MODEL_CARD = """---
license: apache-2.0
library_name: transformers
tags:
- ferry-e2e
---

# tiny-bert

A tiny, randomly initialised BERT-like model that the ferry test suite makes
(`scripts/mkmodel.py`). It is for moving across an air gap, not for inference.
"""

DATASET_CARD = """---
license: cc0-1.0
task_categories:
- text-classification
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train.jsonl
  - split: test
    path: data/test.jsonl
---

# tiny dataset

A few rows that the ferry test suite makes (`scripts/mkmodel.py --kind dataset`).
"""


def write(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def write_json(root, rel, value):
    write(root, rel, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def write_tensors(root, rel, tensors, metadata, summary):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_file(tensors, path, metadata=metadata)
    summary[rel] = {
        name: {
            "dtype": str(t.dtype),
            "shape": list(t.shape),
            "sha256": hashlib.sha256(np.ascontiguousarray(t).tobytes()).hexdigest(),
        }
        for name, t in sorted(tensors.items())
    }


def jsonl(rows):
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=20240501)
    ap.add_argument("--kind", choices=["model", "dataset"], default="model")
    args = ap.parse_args()

    root = os.path.abspath(args.outdir)
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    tensors = {}
    if args.kind == "model":
        # One metadata key only: safetensors writes a map's keys in no fixed order.
        meta = {"format": "pt"}
        write_tensors(root, "model.safetensors", model_tensors(rng), meta, tensors)
        write_tensors(root, "sub/extra.safetensors", extra_tensors(rng), meta, tensors)
        write_json(root, "config.json", config_json())
        write_json(root, "tokenizer.json", tokenizer_json())
        write(root, "README.md", MODEL_CARD.encode())
    else:
        words = VOCAB[5:]
        rows = [
            {"text": " ".join(words[(i * 7 + j) % len(words)] for j in range(6)), "label": i % 4}
            for i in range(24)
        ]
        write(root, "data/train.jsonl", jsonl(rows[:16]))
        write(root, "data/test.jsonl", jsonl(rows[16:]))
        write_tensors(
            root,
            "data/features.safetensors",
            dataset_tensors(rng),
            {"format": "np"},
            tensors,
        )
        write(root, "README.md", DATASET_CARD.encode())

    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                data = f.read()
            files.append(
                {
                    "path": os.path.relpath(path, root).replace(os.sep, "/"),
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
    files.sort(key=lambda f: f["path"])
    json.dump(
        {"dir": root, "kind": args.kind, "seed": args.seed, "files": files, "tensors": tensors},
        sys.stdout,
        sort_keys=True,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
