"""Canonical rows → training examples (token ids + labels), cached between runs.

Tokenising a large dataset takes minutes, and most runs of a dataset use the same tokenizer and length.
The examples are cached under the job's cache_dir, keyed by the content of the train/validation files,
the tokenizer (its files and chat template), the maximum length and the objective; a cache file is a
safetensors file of flat int32 arrays with offsets — data, never code, so reading it is safe.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from easytune.datasets import file_sha256
from easytune.i18n import UserError
from easytune.train.recipes import recipe_for

ENCODING_VERSION = 1  # bump when the encoding of a row changes, so old caches are not read
TOKENIZER_FILE_PREFIXES = ("tokenizer", "chat_template", "special_tokens", "vocab", "merges", "added_tokens")


def read_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                row = json.loads(line)
                row.setdefault("line", number)
                rows.append(row)
    return rows


def encode_rows(tokenizer, rows: list[dict], max_len: int, objective: str, path) -> list[dict]:
    """Every row's examples; a row the tokenizer or the chat template cannot handle is named by its line."""
    examples, encode = [], recipe_for(objective).encode
    for row in rows:
        try:
            examples += encode(tokenizer, row, max_len)
        except Exception as exc:  # noqa: BLE001 — whatever broke, the user needs the row to fix
            raise UserError("train.error.bad_row", line=row.get("line", "?"), path=str(path),
                            detail=f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    return examples


def tokenizer_fingerprint(tokenizer, model_path: str) -> str:
    digest = hashlib.sha256((tokenizer.chat_template or "").encode())
    for path in sorted(Path(model_path).iterdir()):
        if path.is_file() and (path.name.startswith(TOKENIZER_FILE_PREFIXES) or path.suffix in (".model", ".tiktoken")):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def load_examples(tokenizer, job: dict, max_len: int, objective: str) -> tuple[list[dict], list[dict] | None, bool]:
    """(train examples, validation examples or None when there is no validation file, read from cache?)."""
    files = {"train": job["train_file"], "val": job.get("val_file")}
    key = hashlib.sha256(json.dumps({
        "version": ENCODING_VERSION, "dataset_sha256": job.get("dataset_sha256"), "max_len": max_len,
        "objective": objective, "tokenizer": tokenizer_fingerprint(tokenizer, job["model_path"]),
        # the hashes the job was created with (checked by the worker before it reads a row)
        "files": job.get("file_sha256") or {f"{name}_file": file_sha256(path) for name, path in files.items() if path},
    }, sort_keys=True).encode()).hexdigest()
    cache = Path(job["cache_dir"]) / "tokens" / f"{key[:32]}.safetensors" if job.get("cache_dir") else None
    if cache is not None and cache.is_file():
        splits = read_examples(cache)
        return splits["train"], splits.get("val"), True
    splits = {name: encode_rows(tokenizer, read_rows(Path(path)), max_len, objective, path)
              for name, path in files.items() if path}
    if cache is not None:
        write_examples(cache, splits)
    return splits["train"], splits.get("val"), False


def write_examples(path: Path, splits: dict[str, list[dict]]) -> None:
    """Each field of each split as one flat int32 array plus offsets; written whole or not at all."""
    tensors = {}
    for split, examples in splits.items():
        fields = list(examples[0]) if examples else []
        tensors[f"{split}.count"] = torch.tensor([len(examples)])
        for name in fields:
            lengths = torch.tensor([len(e[name]) for e in examples], dtype=torch.int64)
            tensors[f"{split}.{name}.offsets"] = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
            tensors[f"{split}.{name}.values"] = torch.tensor([t for e in examples for t in e[name]], dtype=torch.int32)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(partial))
        os.replace(partial, path)
    except OSError:  # a full disk costs the cache, not the run
        partial.unlink(missing_ok=True)


def read_examples(path: Path) -> dict[str, list[dict]]:
    with safe_open(str(path), framework="pt") as f:
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    splits: dict[str, list[dict]] = {}
    for name in tensors:
        if name.endswith(".count"):
            split = name[: -len(".count")]
            count = int(tensors[name][0])
            fields = [n[len(split) + 1: -len(".values")] for n in tensors
                      if n.startswith(split + ".") and n.endswith(".values")]
            columns = {}
            for field in fields:
                values = tensors[f"{split}.{field}.values"].tolist()
                offsets = tensors[f"{split}.{field}.offsets"].tolist()
                columns[field] = [values[offsets[i]:offsets[i + 1]] for i in range(count)]
            splits[split] = [{field: columns[field][i] for field in fields} for i in range(count)]
    return splits
