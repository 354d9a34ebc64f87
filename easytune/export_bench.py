"""How much faster and smaller is an export than the PyTorch model it came from, on this CPU?

    python -m easytune.export_bench [--new-tokens 64] [--prompts 3] [--threads N] [--f32] [--keep DIR]
    python -m easytune.export_bench --gguf MODEL_FOLDER [--new-tokens 64] [--prompts 3] [--threads N]

OpenVINO (the default): builds a ~100M-parameter Llama from a config (random weights: nothing is
downloaded), saves it as safetensors, exports it to OpenVINO three ways — uncompressed fp32 weights, INT8
and INT4 with the same nncf settings EasyTune's exports use — and lets each variant decode the same random
prompts greedily. OpenVINO computes at its CPU default (bf16 where the CPU has bf16 instructions) unless --f32.

GGUF (--gguf): a real model folder (safetensors, config, tokenizer: GGUF needs the tokenizer) written by
EasyTune's GGUF writer as F16, Q8_0 and, where llama-cpp-python is installed, Q4_K_M; each file decoded by
llama.cpp (F16 and Q8_0 by transformers' GGUF loader where llama.cpp is missing), beside the folder in
PyTorch fp32 and its OpenVINO INT4 export. Export time includes writing the file (and, for Q4_K_M, the F16
file it is quantised from).

Decode speed excludes the prompt: (N - 1) / (time for N new tokens - time for 1). Prints figures,
never a pass/fail verdict; on a machine busy with other work the ratios hold better than the speeds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from easytune.export.build import quantization_settings
from easytune.export.service import folder_size, human_size

# ~100M parameters: a small Llama block stack under a 32k vocabulary, embeddings tied to the output.
SHAPE = dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
             num_attention_heads=12, num_key_value_heads=4, max_position_embeddings=2048, tie_word_embeddings=True)
PROMPT_TOKENS = 32


def build_model(folder: Path) -> int:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SHAPE, bos_token_id=1, eos_token_id=2, pad_token_id=0))
    model.save_pretrained(folder, safe_serialization=True)
    return sum(p.numel() for p in model.parameters())


def export_variant(source: Path, folder: Path, bits: int | None, hidden_size: int = SHAPE["hidden_size"]) -> float:
    """Seconds to export. bits None: no weight compression (the IR keeps the fp32 weights)."""
    from easytune.openvino_stack import OVModelForCausalLM, OVWeightQuantizationConfig, nncf

    nncf.set_log_level(logging.WARNING)  # its own tables and progress bars would run through ours
    started = time.perf_counter()
    options = ({"quantization_config": OVWeightQuantizationConfig(**quantization_settings(hidden_size, bits))}
               if bits else {"load_in_8bit": False})
    with contextlib.redirect_stdout(sys.stderr):
        OVModelForCausalLM.from_pretrained(source, export=True, compile=False, **options).save_pretrained(folder)
    return time.perf_counter() - started


def decode_speed(model, prompts, new_tokens: int) -> float:
    """Median decode tokens/s over the prompts; every answer is forced to full length."""
    import torch

    def seconds(prompt, count: int) -> float:
        started = time.perf_counter()
        with torch.no_grad():
            model.generate(input_ids=prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                           min_new_tokens=count, max_new_tokens=count, pad_token_id=0)
        return time.perf_counter() - started

    seconds(prompts[0], 4)  # warm-up
    return statistics.median((new_tokens - 1) / (seconds(p, new_tokens) - seconds(p, 1)) for p in prompts)


def llama_cpp_decode_speed(path: Path, prompts, new_tokens: int, threads: int) -> float:
    """decode_speed's measure for a GGUF file read by llama.cpp; every answer forced to full length."""
    from easytune.export.llamacpp import LlamaCppModel

    llm = LlamaCppModel(path, threads=threads)

    def seconds(prompt, count: int) -> float:
        return llm.greedy(prompt[0].tolist(), None, count)[1]  # no stop token: always `count` tokens

    seconds(prompts[0], 4)  # warm-up
    speed = statistics.median((new_tokens - 1) / (seconds(p, new_tokens) - seconds(p, 1)) for p in prompts)
    llm.close()
    return speed


def gguf_bench(args) -> int:
    """F16, Q8_0 and Q4_K_M files of a real model folder beside the folder itself in PyTorch fp32 and its
    OpenVINO INT4 export (EasyTune's settings)."""
    import torch
    from transformers import AutoModelForCausalLM

    from easytune.export import llamacpp
    from easytune.export.formats import FORMATS
    from easytune.export.gguf import write_gguf

    source = Path(args.gguf).expanduser()
    with_llama_cpp = llamacpp.installed()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    work = Path(args.keep or tempfile.mkdtemp(prefix="easytune-gguf-bench-"))
    pytorch = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, pytorch.config.vocab_size, (1, PROMPT_TOKENS), generator=generator)
               for _ in range(args.prompts)]
    params = sum(p.numel() for p in pytorch.parameters())
    reader = f"llama.cpp (llama-cpp-python {llamacpp.version()})" if with_llama_cpp else "transformers' GGUF loader"
    print(f"{source.name}, {params / 1e6:.1f}M parameters; {args.prompts} prompts × {args.new_tokens} new tokens; "
          f"{os.cpu_count()} CPUs, {threads} threads; GGUF read by {reader}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    weights = sum(f.stat().st_size for f in source.glob("*.safetensors"))
    rows = [("PyTorch fp32", weights, decode_speed(pytorch, prompts, args.new_tokens), None, "")]
    hidden = pytorch.config.hidden_size
    del pytorch
    from easytune.openvino_stack import OVModelForCausalLM

    took = export_variant(source, work / "openvino-int4", 4, hidden)
    openvino = OVModelForCausalLM.from_pretrained(work / "openvino-int4", device="CPU")
    rows.append(("OpenVINO INT4", folder_size(work / "openvino-int4"), decode_speed(openvino, prompts, args.new_tokens),
                 took, ""))
    del openvino
    print("openvino-int4: done", flush=True)
    for fmt in ("gguf-f16", "gguf-q8_0", "gguf-q4_k_m"):
        if not FORMATS[fmt].available():
            print(f"{fmt}: skipped (needs llama-cpp-python)", flush=True)
            continue
        started = time.perf_counter()
        with contextlib.redirect_stdout(sys.stderr):
            details = write_gguf(source, work / fmt, fmt)["gguf"]
        took = time.perf_counter() - started
        path = work / fmt / details["file"]
        if with_llama_cpp:
            speed = llama_cpp_decode_speed(path, prompts, args.new_tokens, threads)
        else:
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
            speed = decode_speed(model, prompts, args.new_tokens)
            del model
        types = ", ".join(f"{kind}×{count}" for kind, count in sorted(details["tensor_types"].items()))
        rows.append((f"GGUF {details['type']}", path.stat().st_size, speed, took, types))
        print(f"{fmt}: done", flush=True)

    base_size, base_speed = rows[0][1], rows[0][2]
    print(f"\n{'variant':<16} {'on disk':>10} {'× size':>7} {'decode tok/s':>13} {'× speed':>8} {'export':>8}  tensors")
    for name, size, speed, took, types in rows:
        print(f"{name:<16} {human_size(size):>10} {size / base_size:>7.2f} {speed:>13.1f} {speed / base_speed:>8.2f} "
              f"{f'{took:.1f} s' if took else '':>8}  {types}")
    if args.keep:
        print(f"Files kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m easytune.export_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens decoded per prompt")
    parser.add_argument("--prompts", type=int, default=3, help="prompts (of 32 random tokens) per variant")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both (default: all)")
    parser.add_argument("--f32", action="store_true", help="OpenVINO computes in f32, as PyTorch does")
    parser.add_argument("--keep", help="write the models here and keep them (default: a temporary folder)")
    parser.add_argument("--gguf", metavar="MODEL_FOLDER",
                        help="measure GGUF F16 / Q8_0 / Q4_K_M files of this model folder instead of OpenVINO")
    args = parser.parse_args(argv)
    if args.gguf:
        return gguf_bench(args)
    import torch
    from transformers import AutoModelForCausalLM

    from easytune.openvino_stack import OVModelForCausalLM, ov

    ov_config = {"INFERENCE_PRECISION_HINT": "f32"} if args.f32 else {}
    if args.threads:
        torch.set_num_threads(args.threads)
        ov_config["INFERENCE_NUM_THREADS"] = args.threads
    precision = ov_config.get("INFERENCE_PRECISION_HINT") or ov.Core().get_property(
        "CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    work = Path(args.keep or tempfile.mkdtemp(prefix="easytune-export-bench-"))
    generator = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, SHAPE["vocab_size"], (1, PROMPT_TOKENS), generator=generator)
               for _ in range(args.prompts)]
    params = build_model(work / "pytorch")
    print(f"random Llama, {params / 1e6:.1f}M parameters; {args.prompts} prompts × {args.new_tokens} new tokens; "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads; OpenVINO computes in {precision}; "
          f"load average {os.getloadavg()[0]:.1f}",
          flush=True)

    pytorch = AutoModelForCausalLM.from_pretrained(work / "pytorch", dtype=torch.float32).eval()
    rows = [("PyTorch fp32", folder_size(work / "pytorch"), decode_speed(pytorch, prompts, args.new_tokens), None)]
    del pytorch
    for name, bits in (("OpenVINO fp32", None), ("OpenVINO INT8", 8), ("OpenVINO INT4", 4)):
        folder = work / name.split()[-1].lower()
        took = export_variant(work / "pytorch", folder, bits)
        model = OVModelForCausalLM.from_pretrained(folder, ov_config=dict(ov_config))
        rows.append((name, folder_size(folder), decode_speed(model, prompts, args.new_tokens), took))
        del model

    base_size, base_speed = rows[0][1], rows[0][2]
    print(f"\n{'variant':<22} {'on disk':>10} {'× size':>7} {'decode tok/s':>13} {'× speed':>8} {'export':>8}")
    for name, size, speed, took in rows:
        print(f"{name:<22} {human_size(size):>10} {size / base_size:>7.2f} {speed:>13.1f} {speed / base_speed:>8.2f} "
              f"{f'{took:.0f} s' if took else '':>8}")
    int4 = rows[-1][2] / base_speed
    print(f"\nINT4 decodes {int4:.1f}× as fast as PyTorch fp32 (target ≥ 3×).")
    if args.keep:
        print(f"Models kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
