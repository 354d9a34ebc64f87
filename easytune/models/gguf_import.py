"""A GGUF file (llama.cpp, Ollama, LM Studio) becomes a model folder EasyTune can train.

    import_gguf(settings, "/models/SmolLM2-135M-Instruct.Q4_1.gguf", progress=...)

What lands in the EasyTune home (`models/<name>-<hash>/`): config.json, the weights dequantised to the
training dtype as safetensors, the tokenizer rebuilt from the file's metadata (gguf_tokenizer), the
chat template, `easytune-source.json` (which file, its sha256, quantisation, architecture) and
`easytune-check.json` (the sanity check's answer and loss). The folder is written under a hidden
`.partial` name and renamed only once everything is in it, so nothing half-written ever looks
complete. The same file imported twice (same hash) is found, not converted again.

The conversion (Transformers reads and dequantises the tensors; which architectures it can read is
its business) runs in a subprocess, `python -m easytune.models.gguf_import SRC OUT`, that
prints one JSON line per stage: the app never imports torch and gets its memory back afterwards.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from easytune.i18n import UserError
from easytune.models.hub_download import DownloadCallback, DownloadProgress
from easytune.settings import Settings

MAGIC = b"GGUF"
SOURCE_FILE = "easytune-source.json"
CHECK_FILE = "easytune-check.json"
STAGES = ("hash", "read", "convert", "write", "check")  # the progress bar walks through these
HASH_SHARE = 0.25  # of the bar: hashing reads the whole file; the rest is the subprocess's stages
DISK_MARGIN = 1.15  # config, tokenizer and safetensors headers on top of the raw weights


def is_gguf(path: str | Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == MAGIC
    except OSError:
        return False


def file_sha256(path: Path, on_bytes=None, chunk: int = 8 << 20) -> str:
    digest, done = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            done += len(block)
            if on_bytes:
                on_bytes(done)
    return digest.hexdigest()


def describe(path: str | Path) -> dict:
    """Architecture, name, quantisation, parameter count and tokenizer kind, from the header (no weights)."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def value(key, default=None):
        found = reader.fields.get(key)
        return default if found is None else found.contents()

    counts: dict[str, int] = {}
    for tensor in reader.tensors:
        counts[tensor.tensor_type.name] = counts.get(tensor.tensor_type.name, 0) + int(tensor.n_elements)
    try:
        quantisation = gguf.LlamaFileType(value("general.file_type")).name.removeprefix("MOSTLY_")
    except (ValueError, TypeError):
        quantisation = max(counts, key=counts.get) if counts else "?"
    return {"architecture": value("general.architecture", "?"), "name": value("general.name"),
            "quantisation": quantisation, "parameters": sum(counts.values()),
            "tokenizer": value("tokenizer.ggml.model"), "pre_tokenizer": value("tokenizer.ggml.pre"),
            "context_length": value(f"{value('general.architecture', '')}.context_length")}


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60] or "model"


def imported_folder(settings: Settings, sha256: str) -> Path | None:
    """A complete earlier import of the file with this hash, if there is one."""
    for folder in settings.folder("models").glob(f"*-{sha256[:12]}"):
        if (folder / SOURCE_FILE).is_file() and (folder / CHECK_FILE).is_file():
            return folder
    return None


def training_dtype() -> str:
    """What the worker trains in on this machine: bf16 on a GPU that has it, fp32 elsewhere. (Looks at
    the GPUs through torch: called in the conversion subprocess only.)"""
    from easytune.models.hardware import probe

    hardware = probe()
    return "bfloat16" if hardware.accelerator != "cpu" and hardware.bf16 else "float32"


def import_gguf(settings: Settings, path: str | Path, *, label: str | None = None, origin: str = "file",
                progress: DownloadCallback | None = None) -> tuple[Path, dict, dict]:
    """Convert a GGUF file into a model folder under the home: (folder, source record, sanity check)."""
    src = Path(path).expanduser().resolve()
    label = label or src.name
    size = src.stat().st_size
    total = max(1, round(size / HASH_SHARE))

    def report(stage: str, done: float, finished: bool = False):
        if progress:
            progress(DownloadProgress(hub_id=label, done=int(done), total=total, files_done=STAGES.index(stage),
                                      files_total=len(STAGES), current=[stage], finished=finished, stage=stage))

    sha256 = file_sha256(src, lambda done: report("hash", done))
    earlier = imported_folder(settings, sha256)
    if earlier is not None:  # the same bytes, perhaps reached another way (an Ollama blob, LM Studio's copy)
        report("check", total, finished=True)
        record = {**_read_json(earlier / SOURCE_FILE), "file": str(src), "origin": origin, "reused": True}
        return earlier, record, _read_json(earlier / CHECK_FILE)

    info = _describe_or_refuse(src)
    need = int(info["parameters"] * 4 * DISK_MARGIN)  # fp32, the larger of the two dtypes it may write
    models_dir = settings.folder("models")
    free = shutil.disk_usage(models_dir).free
    if need > free:
        raise UserError("models.gguf_no_space", file=src.name, need_gb=f"{need / 1e9:.1f}",
                        free_gb=f"{free / 1e9:.1f}", folder=str(models_dir))
    final = models_dir / f"{_slug(Path(label).stem if label.endswith('.gguf') else label)}-{sha256[:12]}"
    partial = models_dir / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)  # what a killed import left
    record = {"file": str(src), "sha256": sha256, "size_bytes": size, "origin": origin,
              "imported_at": time.time(), **info}
    check = _convert(src, partial, lambda stage, share: report(stage, size + share * (total - size)))
    record["dtype"] = check.pop("dtype")
    (partial / SOURCE_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    (partial / CHECK_FILE).write_text(json.dumps(check, indent=2, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)  # by this name but without its records: an incomplete earlier try
    partial.rename(final)
    report("check", total, finished=True)
    return final, record, check


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _describe_or_refuse(src: Path) -> dict:
    try:
        return describe(src)
    except Exception as exc:  # noqa: BLE001 - a damaged file is the user's to replace
        raise UserError("models.gguf_unreadable", file=str(src), error=str(exc)[:200]) from exc


def _convert(src: Path, out: Path, on_stage) -> dict:
    """Run the conversion subprocess; relay its stages; its refusal becomes this process's UserError."""
    command = [sys.executable, "-m", "easytune.models.gguf_import", str(src), str(out)]
    # stderr (Transformers' progress bars, warnings) to a file: a full pipe nobody reads would stall the child
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        result: dict = {}
        for line in process.stdout:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if "stage" in message:
                on_stage(message["stage"], message["share"])
            result = message
        process.wait()
        log.seek(0)
        error = log.read()
    if "refused" in result:
        shutil.rmtree(out, ignore_errors=True)
        raise UserError(result["refused"]["key"], **result["refused"]["params"])
    if process.returncode != 0 or "check" not in result:
        shutil.rmtree(out, ignore_errors=True)
        raise UserError("models.gguf_failed", file=src.name, error=error.strip()[-300:] or f"exit {process.returncode}")
    return result["check"]


# ---------------------------------------------------------------------------------------------
# the subprocess


def _emit(**message) -> None:
    print(json.dumps(message, ensure_ascii=False), flush=True)


def supported_architectures() -> set[str]:
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    return set(GGUF_CONFIG_MAPPING) - {"general", "tokenizer"}  # those two are shared sections, not models


def convert(src: Path, out: Path) -> dict:
    """Dequantise to the training dtype, rebuild the tokenizer, write the folder, check it from disk."""
    import gguf
    import torch
    from transformers import AutoModelForCausalLM

    from easytune.models.gguf_tokenizer import build_tokenizer, read_spec
    from easytune.models.sanity import check_model

    _emit(stage="read", share=0.0)
    reader = gguf.GGUFReader(str(src))
    architecture = reader.fields["general.architecture"].contents()
    if architecture not in supported_architectures():
        raise UserError("models.gguf_unsupported", architecture=architecture, file=src.name,
                        supported=", ".join(sorted(supported_architectures())))
    spec = read_spec(reader)
    del reader
    tokenizer = build_tokenizer(spec, str(src))
    _emit(stage="convert", share=0.15)
    dtype = training_dtype()
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=getattr(torch, dtype))
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    _emit(stage="write", share=0.6)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    del model
    _emit(stage="check", share=0.75)
    check = check_model(out)
    check.update(tokenizer_notes=spec.notes, dtype=dtype)
    return check


def main(argv: list[str]) -> int:
    src, out = Path(argv[0]), Path(argv[1])
    try:
        _emit(check=convert(src, out))
    except UserError as exc:
        _emit(refused={"key": exc.key, "params": exc.params})
    except ValueError as exc:  # Transformers' own word on a model it cannot read
        _emit(refused={"key": "models.gguf_unsupported_detail", "params": {"file": src.name, "error": str(exc)[:300]}})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
