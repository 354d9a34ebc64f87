"""Check the memory estimator against measured peaks: real training steps, one process each.

    python -m easytune.models.bench_memory            all cases, a table of estimate vs measured
    python -m easytune.models.bench_memory --quick    the tiny model only (a few seconds a case)
    python -m easytune.models.bench_memory --large    also a Qwen2.5-0.5B-sized model (minutes)
    python -m easytune.models.bench_memory --cuda     on an NVIDIA GPU: bf16 LoRA, 4-bit QLoRA, fp32 full,
                                                      0.1B to 7B shapes

On a GPU the measured figure is what the process holds on the device: its CUDA context plus the
peak of PyTorch's memory pool (what nvidia-smi shows), against `estimate_memory(..., device="cuda")`.

Each case builds a randomly initialised Llama from a config (nothing is downloaded), runs a few
LoRA or full fine-tuning steps in fp32 (forward, backward, AdamW step), and reports the peak resident
memory of its process above what the process held before the model was built. The estimate for the
same shape and settings is computed with `estimate_memory(..., device="cpu")`. Each measuring process
first calls `hardware.tune_cpu_allocator()` with exact accounting, as the estimate assumes
(`--reuse` shows the heap-reuse setting a worker takes where memory has room, `--default-allocator`
glibc's default settings).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field

from easytune.models.estimate import MIB, ModelShape, estimate_memory

TINY = ModelShape(layers=4, hidden=128, intermediate=352, heads=4, kv_heads=2, vocab=32000)
# Qwen2.5-0.5B's numbers (large vocabulary, tied embeddings) in a Llama block
HALF_B = ModelShape(layers=24, hidden=896, intermediate=4864, heads=14, kv_heads=2, vocab=151936,
                    tie_embeddings=True)
SMALL_100M = ModelShape(layers=12, hidden=768, intermediate=2048, heads=12, kv_heads=4, vocab=32000,
                        tie_embeddings=True)


@dataclass(frozen=True)
class Case:
    name: str
    shape: ModelShape
    method: str  # lora | qlora | full
    seq_len: int = 256
    batch: int = 4
    lora_r: int = 16
    target: str = "all_linear"
    lora_dropout: float = 0.05
    grad_checkpointing: bool = False
    steps: int = 4
    extra: dict = field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "fp32"  # the weights' (for qlora: the compute dtype)

    def estimate(self):
        return estimate_memory(self.shape, self.method, self.seq_len, self.batch, self.grad_checkpointing,
                               self.dtype, self.lora_r, self.target, device=self.device,
                               lora_dropout=self.lora_dropout, padded=False)

    def to_json(self) -> str:
        data = {k: getattr(self, k) for k in ("name", "method", "seq_len", "batch", "lora_r", "target",
                                              "lora_dropout", "grad_checkpointing", "steps", "device", "dtype",
                                              "extra")}
        data["shape"] = self.shape.to_dict()
        return json.dumps(data)


QUICK_CASES = [
    Case("tiny lora all_linear r16", TINY, "lora"),
    Case("tiny full", TINY, "full"),
]
CASES = QUICK_CASES + [
    Case("tiny lora attention r8 dropout0", TINY, "lora", lora_r=8, target="attention", lora_dropout=0.0),
    Case("~100M lora all_linear r16", SMALL_100M, "lora"),
    Case("~100M lora attention_qkv r8 dropout0", SMALL_100M, "lora", lora_r=8, target="attention_qkv",
         lora_dropout=0.0),
    Case("~100M full", SMALL_100M, "full"),
    Case("~100M lora all_linear ckpt", SMALL_100M, "lora", grad_checkpointing=True),
    Case("~100M full ckpt", SMALL_100M, "full", grad_checkpointing=True),
]

LARGE_CASES = [
    Case("0.5B-shape lora all_linear r16", HALF_B, "lora", seq_len=256, batch=2, steps=3),
    Case("0.5B-shape full", HALF_B, "full", seq_len=256, batch=2, steps=3),
]

# Qwen2.5-1.5B / 3B / 7B's numbers in a Llama block
QWEN_1_5B = ModelShape(layers=28, hidden=1536, intermediate=8960, heads=12, kv_heads=2, vocab=151936,
                       tie_embeddings=True)
QWEN_3B = ModelShape(layers=36, hidden=2048, intermediate=11008, heads=16, kv_heads=2, vocab=151936,
                     tie_embeddings=True)
QWEN_7B = ModelShape(layers=28, hidden=3584, intermediate=18944, heads=28, kv_heads=4, vocab=152064)


def _gpu(name, shape, method, **kw) -> Case:
    kw.setdefault("dtype", "fp32" if method == "full" else "bf16")  # as the planner sets them on a bf16 GPU
    return Case(name, shape, method, device="cuda", steps=kw.pop("steps", 3), **kw)


CUDA_CASES = [
    _gpu("~100M lora bf16", SMALL_100M, "lora", seq_len=512, batch=8),
    _gpu("0.5B lora bf16", HALF_B, "lora", seq_len=1024, batch=4),
    _gpu("0.5B lora bf16 ckpt", HALF_B, "lora", seq_len=1024, batch=4, grad_checkpointing=True),
    _gpu("0.5B qlora", HALF_B, "qlora", seq_len=1024, batch=4),
    _gpu("0.5B qlora, norms upcast to fp32", HALF_B, "qlora", seq_len=1024, batch=4, extra={"upcast": True}),
    _gpu("0.5B full fp32", HALF_B, "full", seq_len=512, batch=4),
    _gpu("1.5B lora bf16", QWEN_1_5B, "lora", seq_len=1024, batch=4),
    _gpu("1.5B qlora", QWEN_1_5B, "qlora", seq_len=1024, batch=4),
    _gpu("3B lora bf16 ckpt", QWEN_3B, "lora", seq_len=2048, batch=2, grad_checkpointing=True),
    _gpu("3B qlora", QWEN_3B, "qlora", seq_len=2048, batch=2),
    _gpu("7B qlora ckpt", QWEN_7B, "qlora", seq_len=2048, batch=1, grad_checkpointing=True, steps=2),
]

# which projections each scope adapts in a Llama block
LLAMA_TARGETS = {
    "attention_qkv": ["q_proj", "k_proj", "v_proj"],
    "attention": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all_linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _peak_rss() -> int:
    """The process's peak resident memory since start, or since `_reset_peak()` where Linux allows it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _reset_peak() -> None:
    """Start the peak afresh (Linux: writing 5 to clear_refs resets VmHWM), so that a peak during the
    imports — their size varies with what the interpreter compiles or caches — is not counted as ours."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
            refs.write("5")
    except OSError:
        pass


def child(spec: dict) -> dict:
    """Runs inside the measuring process: build, train a few steps, report the peak."""
    import gc

    from easytune.models.hardware import MALLOC_EXACT, MALLOC_REUSE, tune_cpu_allocator

    if spec.get("allocator", "exact") != "default":
        tune_cpu_allocator(MALLOC_REUSE if spec.get("allocator") == "reuse" else MALLOC_EXACT)

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    shape = spec["shape"]
    tokens = torch.randint(0, shape["vocab"], (spec["batch"], spec["seq_len"]))
    mask = torch.ones_like(tokens)
    config = LlamaConfig(
        hidden_size=shape["hidden"], intermediate_size=shape["intermediate"],
        num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
        num_key_value_heads=shape["kv_heads"], vocab_size=shape["vocab"],
        tie_word_embeddings=shape["tie_embeddings"], max_position_embeddings=max(2048, spec["seq_len"]),
        use_cache=False)
    if spec.get("device") == "cuda":
        return _cuda_child(spec, config, tokens, mask)
    gc.collect()
    _reset_peak()
    before = _rss()
    before_peak = _peak_rss()  # if the imports peaked above where they settled, it would hide ours
    model = LlamaForCausalLM(config)
    if spec["grad_checkpointing"]:
        model.gradient_checkpointing_enable()
    if spec["method"] == "lora":
        model = get_peft_model(model, LoraConfig(
            r=spec["lora_r"], lora_alpha=2 * spec["lora_r"], lora_dropout=spec["lora_dropout"],
            target_modules=LLAMA_TARGETS[spec["target"]], task_type="CAUSAL_LM"))
        if spec["grad_checkpointing"]:
            model.enable_input_require_grads()
    trainable, losses, seconds = _train_steps(model, tokens, mask, spec["steps"])
    peak = _peak_rss()
    return {"measured": peak - before, "baseline": before, "import_peak_above": before_peak - before,
            "losses": losses, "seconds_per_step": round(seconds / spec["steps"], 2), "trainable": trainable}


def _train_steps(model, tokens, mask, steps: int) -> tuple[int, list[float], float]:
    """A few forward, backward and AdamW steps; (trainable parameters, losses, seconds)."""
    import torch

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    losses, started = [], time.perf_counter()
    for _ in range(steps):
        loss = model(input_ids=tokens, attention_mask=mask, labels=tokens).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(round(float(loss), 4))  # (on a GPU, reading the loss waits for the step)
    return sum(p.numel() for p in params), losses, time.perf_counter() - started


def _cuda_child(spec: dict, config, tokens, mask) -> dict:
    """The same steps on the GPU, built as the worker builds them (bf16 weights, or 4-bit NF4 through
    bitsandbytes from a saved copy, or fp32 for full tuning)."""
    import tempfile

    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    torch.zeros(1, device="cuda")  # the context exists before anything is measured
    free, total = torch.cuda.mem_get_info()
    context = total - free
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[spec["dtype"]]
    if spec["method"] == "qlora":
        with tempfile.TemporaryDirectory() as folder:
            with torch.device("cuda"):
                AutoModelForCausalLM.from_config(config, dtype=dtype).save_pretrained(folder)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                       bnb_4bit_compute_dtype=dtype)
            model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, quantization_config=quant,
                                                         device_map={"": 0})
        if spec["extra"].get("upcast"):  # peft's usual preparation, which the worker leaves out
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        torch.cuda.reset_peak_memory_stats()
        with torch.device("cuda"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    if spec["grad_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if spec["method"] in ("lora", "qlora"):
        model = get_peft_model(model, LoraConfig(
            r=spec["lora_r"], lora_alpha=2 * spec["lora_r"], lora_dropout=spec["lora_dropout"],
            target_modules=LLAMA_TARGETS[spec["target"]], task_type="CAUSAL_LM"))
    trainable, losses, seconds = _train_steps(model, tokens.cuda(), mask.cuda(), spec["steps"])
    return {"measured": context + torch.cuda.max_memory_reserved(), "baseline": context,
            "allocated_peak": torch.cuda.max_memory_allocated(), "import_peak_above": 0, "losses": losses,
            "seconds_per_step": round(seconds / spec["steps"], 3), "trainable": trainable}


def measure(case: Case, timeout: float = 600, allocator: str = "exact") -> dict:
    """Run one case in a fresh process; its peak resident memory above its starting point, in bytes.

    allocator: "exact" or "reuse" (hardware.tune_cpu_allocator's two settings), or "default" (the C
    library's adaptive malloc settings).
    """
    spec = json.loads(case.to_json())
    spec["allocator"] = allocator
    proc = subprocess.run([sys.executable, "-m", "easytune.models.bench_memory", "--child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark case {case.name!r} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def compare(case: Case, timeout: float = 600, allocator: str = "exact") -> dict:
    """Estimate vs measured for one case. The estimate leaves out the runtime's own memory (Python
    and the libraries, loaded before the measurement starts), as the measurement does."""
    result = measure(case, timeout, allocator)
    estimate = case.estimate()
    predicted = estimate.total - estimate.parts.get("runtime", 0)
    error = (predicted - result["measured"]) / result["measured"] * 100
    return {"case": case.name, "params": estimate.total_params, "trainable": estimate.trainable_params,
            "estimate": predicted, "measured": result["measured"], "error_pct": round(error, 1),
            "seconds_per_step": result["seconds_per_step"], "estimate_parts": estimate.to_dict()}


def format_table(rows: list[dict]) -> str:
    head = f"{'case':<40} {'params':>8} {'estimate':>10} {'measured':>10} {'error':>8}"
    lines = [head, "-" * len(head)]
    for row in rows:
        lines.append(f"{row['case']:<40} {row['params'] / 1e6:>7.1f}M {row['estimate'] / MIB:>8.0f}Mi "
                     f"{row['measured'] / MIB:>8.0f}Mi {row['error_pct']:>+7.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m easytune.models.bench_memory")
    parser.add_argument("--quick", action="store_true", help="only the tiny model")
    parser.add_argument("--large", action="store_true", help="add a Qwen2.5-0.5B-sized model")
    parser.add_argument("--only-large", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--default-allocator", action="store_true",
                        help="measure with the C library's default malloc settings (not tuned)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure with freed memory reused (the worker's setting where memory has room)")
    parser.add_argument("--cuda", action="store_true", help="the GPU cases (bf16 LoRA, QLoRA, full)")
    parser.add_argument("--only", help="the cases whose name contains this text")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON as well")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return 0
    rows = []
    print("peak memory (CPU: resident above the process's own; GPU: context + PyTorch's pool), a few AdamW "
          "steps per case\n")
    cases = QUICK_CASES if args.quick else CASES
    if args.cuda:
        cases = CUDA_CASES
    if args.only:
        cases = [c for c in cases if args.only in c.name]
    if args.large:
        cases = cases + LARGE_CASES
    if args.only_large:
        cases = LARGE_CASES
    for case in cases:
        rows.append(compare(case, allocator="default" if args.default_allocator else
                            "reuse" if args.reuse else "exact"))
        print("\n".join(format_table(rows).splitlines()[(0 if len(rows) == 1 else -1):]), flush=True)
    worst = max(abs(r["error_pct"]) for r in rows)
    print(f"\nlargest error: {worst:.1f}%")
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
