"""Every export format, once: what writes it, how its check loads it, the agreement it must reach, the disk it
needs, whether it answers on its own, and whether this machine can make it. The service, `easytune export
--format`, step ④'s format and chat lists and the model card all read this table; a new format is one record
here plus its writer and its messages (ui.eval.format.<name>, export.card.format.<name>)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from easytune.i18n import UserError


@dataclass(frozen=True)
class ExportFormat:
    name: str
    writer: str  # merged | adapter | openvino | gguf | gguf-lora: the writer service._build calls
    check: str  # transformers | peft | openvino | gguf | gguf-lora: how verify.load_export reads it back
    min_agreement: float  # smallest next-token agreement with the trained model the check accepts
    space_factor: float  # disk it needs, as a share of the model's weights (the adapter: of its own folder)
    gguf_type: str | None = None  # llama.cpp's name of the weight type in the file
    openvino_bits: int | None = None  # nncf's weight compression
    needs_module: str | None = None  # a package this machine must have to write it
    missing_key: str | None = None  # the message saying what to install when it has not
    answers_alone: bool = True  # a model by itself; False: an adapter, which answers only on its base model

    def available(self) -> bool:
        # find_spec, not an import: listing the formats must not load a native library
        return self.needs_module is None or importlib.util.find_spec(self.needs_module) is not None

    def check_available(self) -> None:
        """Before an export starts: the package is there and imports (a broken install counts as none)."""
        if self.needs_module is not None and not module_usable(self.needs_module):
            raise UserError(self.missing_key, format=self.name)


def module_usable(name: str) -> bool:
    """Is the package installed, and does it import with what it needs (its own dependencies, its library)?"""
    if importlib.util.find_spec(name) is None:
        return False
    try:
        importlib.import_module(name)
    except (ImportError, OSError):
        return False
    return True


# Agreement: merged and adapter hold the same weights (a merge only rounds differently), INT8 moves logits by
# a fraction of a percent: on the built-in model all three answer identically. INT4 moves them enough to flip
# a close call now and then (0.985 measured on the built-in model); 0.8 still rejects a broken export, whose
# agreement is near zero. GGUF F16 rounds the weights to half precision only; Q8_0 rounds each block of 32
# weights to 8 bits with one scale, about as close as INT8; Q4_K_M is llama.cpp's 4-bit mix, held to INT4's
# bar. The GGUF LoRA adapter is stored in F32 and applied on an F16 base, so F16's bar.
# Disk: merged saves the weights again; OpenVINO writes a merged copy to convert from, then the (smaller) IR;
# GGUF too, then a file at most as large as the weights in F16 (a bf16 base), half of that in Q8_0; Q4_K_M
# writes the F16 file to quantise from, then one about a third of its size; the GGUF adapter writes the base
# as F16 for its check (deleted after it) beside the small adapter file.
FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    ExportFormat("openvino-int8", "openvino", "openvino", 0.95, 1.6, openvino_bits=8),
    ExportFormat("openvino-int4", "openvino", "openvino", 0.80, 1.5, openvino_bits=4),
    ExportFormat("merged", "merged", "transformers", 0.98, 1.1),
    ExportFormat("adapter", "adapter", "peft", 0.98, 1.1, answers_alone=False),
    ExportFormat("gguf-q8_0", "gguf", "gguf", 0.95, 1.7, gguf_type="Q8_0"),
    ExportFormat("gguf-q4_k_m", "gguf", "gguf", 0.80, 2.4, gguf_type="Q4_K_M", needs_module="llama_cpp",
                 missing_key="export.error.needs_llama_cpp"),
    ExportFormat("gguf-f16", "gguf", "gguf", 0.98, 2.1, gguf_type="F16"),
    ExportFormat("gguf-lora", "gguf-lora", "gguf-lora", 0.98, 1.2, gguf_type="F32", answers_alone=False),
)}
NAMES = tuple(FORMATS)  # in the order step ④ lists them; the first is its default


def get_format(name: str) -> ExportFormat:
    if name not in FORMATS:
        raise UserError("export.error.format", format=name, choices=", ".join(NAMES))
    return FORMATS[name]


def label_key(name: str) -> str:
    """The UI's label of a format: its name, or its name and why it cannot be made here."""
    return f"ui.eval.format.{name}" if FORMATS[name].available() else f"ui.eval.format_missing.{name}"
