"""Training throughput: the real worker against a plain padded loop, and against this machine's peak.

    python -m easytune.train.bench                  the built-in tiny model and a random ~90M Llama
    python -m easytune.train.bench --models tiny    one of them (tiny | llama90m | a model folder)

Each case trains LoRA r8 on every linear layer, cutoff 256, batch 4, on alpaca-like rows of about 180
tokens (instruction + answer, lengths spread as real data is), nothing downloaded: the ~90M model is a
randomly initialised Llama built from a config with the tiny model's tokenizer. It reports
  - tokens/s of the worker (`python -m easytune.train`, packing on, and off) — the median training step —
    and of a plain loop on the same rows: padded batches, forward, backward, AdamW, the C library's
    allocator as it comes — the baseline;
  - on a CPU where precision auto trains in bf16 (easytune.models.calibrate.bf16_pays), the worker in fp32
    as well: both speeds, and how far apart their loss curves are (the largest per-step difference);
  - achieved FLOP/s (useful tokens only) against this CPU's/GPU's measured matmul rate in the dtype the
    worker used, counted two ways:
    4·N per token, what LoRA computes (forward 2·N and the activation gradients 2·N over the frozen
    matmul weights N), and the common 6·N convention (which adds weight gradients LoRA never computes);
  - the share of the worker's wall time spent scoring the forgetting (CF) reference text, the base
    model's pass included, at the worker's own evaluation cadence (about ten per run) and time budget
    (presets/health.yaml, forgetting.max_time_share);
  - beside LLaMA-Factory where its CLI is found (see llamafactory_cli): its `train` on the same folder, rows,
    LoRA, cutoff, batch and steps, with its default gradient checkpointing and without, in rows/s of the
    training loop.
Figures, not a pass/fail test. Close other programs first: they share the cores (the machine's load
average is printed beside the figures).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch  # its threads wait as the worker's do: easytune/__init__.py

from easytune.settings import ASSETS_DIR, PRESETS_DIR

TINY = ASSETS_DIR / "tiny-model"
CUTOFF, BATCH, LORA_R = 256, 4, 8
MEAN_TOKENS = 180
WARMUP_STEPS = 2  # the first steps pay for allocation and kernel selection


def matmul_peak(device: torch.device, bf16: bool, n: int = 2048, repeats: int = 10) -> float:
    """Measured matmul FLOP/s on this device in the dtype the worker trains in (bf16 on a GPU; on a CPU
    as `bf16` says): the best of a few large square products."""
    dtype = torch.bfloat16 if device.type == "cuda" or bf16 else torch.float32
    n = 8192 if device.type == "cuda" else n
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best


def alpaca_like_rows(tokenizer, count: int, seed: int = 0) -> list[dict]:
    """Instruction + answer rows of about MEAN_TOKENS tokens, lengths spread (lognormal) as real data is."""
    rng = random.Random(seed)
    ids = [i for path in sorted((PRESETS_DIR / "general_reference").glob("*.txt"))
           for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
           for i in tokenizer(line.strip() + " ", add_special_tokens=False)["input_ids"]]
    rows = []
    for _ in range(count):
        total = min(CUTOFF - 16, max(48, int(rng.lognormvariate(math.log(MEAN_TOKENS), 0.4))))
        asked = rng.randint(12, 40)
        start = rng.randrange(len(ids) - total)
        instruction = tokenizer.decode(ids[start:start + asked])
        answer = tokenizer.decode(ids[start + asked:start + total - 12])  # ~12 tokens of chat template
        rows.append({"messages": [{"role": "user", "content": instruction}, {"role": "assistant", "content": answer}]})
    return rows


def build_llama90m(folder: Path) -> Path:
    """A randomly initialised ~90M-parameter Llama (12 × 768) that uses the tiny model's tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(TINY)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def training_flops_per_token(model_path: Path, mean_len: float, per_param: int = 4) -> tuple[float, int]:
    """Training FLOPs per token: `per_param`·N over the matmul weights N, plus causal attention (forward
    2·L·d·s, backward twice that). LoRA computes 4·N: forward 2·N and the backward's activation gradients
    2·N, no weight gradients for the frozen weights; 6·N is the usual convention for full training. The
    adapters' own few FLOPs are left out."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model_path)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    per_layer = (c.hidden_size * head_dim * (2 * c.num_attention_heads + 2 * c.num_key_value_heads)
                 + 3 * c.hidden_size * c.intermediate_size)
    matmul_params = c.num_hidden_layers * per_layer + c.hidden_size * c.vocab_size  # + the output head
    attention = 3 * 2 * c.num_hidden_layers * c.num_attention_heads * head_dim * mean_len
    return per_param * matmul_params + attention, matmul_params


def plan_for(data: str, steps: int, packing: bool, method: str = "lora", precision: str = "auto") -> dict:
    return {"model": "bench", "dataset": data, "method": method, "lora_r": LORA_R, "lora_alpha": 2 * LORA_R,
            "precision": precision,
            "target_modules": "all_linear", "packing": packing, "learning_rate": 2e-4, "warmup_ratio": 0.0,
            "max_steps": steps, "batch_size": BATCH, "max_seq_len": CUTOFF, "eval_every": 0,
            "val_ratio": 0.05, "retention_ratio": 0.0, "forgetting_guard": False, "keep_best": False}


def run_worker(model_path: Path, train_file: Path, steps: int, work: Path, packing: bool = True,
               method: str = "lora", precision: str = "auto", cpu_bf16: bool = False) -> dict:
    """The real worker in its own process, as a job runs; figures read from its events. `cpu_bf16`: what the
    jobs service records for precision auto on this CPU."""
    from easytune.jobs.folder import JobFolder
    from easytune.plan.schema import TrainingPlan

    job_dir = work / f"job-{method}-{packing}-{precision}"
    job_dir.mkdir()
    folder = JobFolder(job_dir)
    TrainingPlan.from_dict(plan_for(str(train_file), steps, packing, method, precision)).save(folder.plan_file)
    folder.write_resolved({
        "model_path": str(model_path), "train_file": str(train_file), "val_file": None, "dataset": "bench",
        "dataset_sha256": "bench", "dataset_kind": "sft", "cache_dir": str(work / "cache"), "cpu_bf16": cpu_bf16})
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "easytune.train", str(job_dir)], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # a failure is read from its events
    wall = time.perf_counter() - started
    events = [json.loads(line) for line in folder.events_file.read_text().splitlines()]
    failed = [e for e in events if e["type"] == "error"]
    if failed:
        raise RuntimeError(failed[0]["detail"])
    steps_done = [e for e in events if e["type"] == "step"]
    rates = [e["tokens_per_s"] for e in steps_done][WARMUP_STEPS:]
    scored = [e["cf_s"] for e in events if e["type"] == "eval" and "cf_s" in e]
    return {"tokens_per_s": statistics.median(rates), "spread": (min(rates), max(rates)), "wall_s": wall,
            "cf_s": sum(scored), "cf_passes": len(scored), "worker_s": events[-1]["t"] - events[0]["t"],
            "loss_first_last": (steps_done[0]["loss"], steps_done[-1]["loss"]),
            "losses": [e["loss"] for e in steps_done],
            "delivered": [e["kind"] for e in events if e["type"] == "artifact"]}


def llamafactory_cli() -> str | None:
    """LLaMA-Factory's CLI: EASYTUNE_LLAMAFACTORY_CLI, else `llamafactory-cli` on the PATH (it is best kept in a
    virtual environment of its own: its pins differ from EasyTune's)."""
    import shutil

    return os.environ.get("EASYTUNE_LLAMAFACTORY_CLI") or shutil.which("llamafactory-cli")


def run_llamafactory(cli: str, model_path: Path, rows: list[dict], steps: int, work: Path,
                     checkpointing: bool) -> float:
    """LLaMA-Factory's `train` on the same folder and rows, with the same LoRA (r8, every linear layer), cutoff,
    batch and steps, its precision left at its own default; rows/s of its training loop, read from its
    trainer log (whole seconds) after the warm-up steps."""
    out = work / f"llamafactory-{checkpointing}"
    data = out / "data"
    data.mkdir(parents=True)
    alpaca = [{"instruction": r["messages"][0]["content"], "input": "", "output": r["messages"][1]["content"]}
              for r in rows]
    (data / "bench.json").write_text(json.dumps(alpaca, ensure_ascii=False), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({"bench": {"file_name": "bench.json"}}), encoding="utf-8")
    config = {"model_name_or_path": str(model_path), "stage": "sft", "do_train": True, "finetuning_type": "lora",
              "lora_rank": LORA_R, "lora_alpha": 2 * LORA_R, "lora_target": "all", "dataset": "bench",
              "dataset_dir": str(data), "template": "default", "cutoff_len": CUTOFF,
              "per_device_train_batch_size": BATCH, "gradient_accumulation_steps": 1, "max_steps": steps,
              "learning_rate": 2e-4, "logging_steps": 1, "output_dir": str(out / "run"), "report_to": "none",
              "save_strategy": "no", "disable_gradient_checkpointing": not checkpointing}
    import yaml

    (out / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    env = dict(os.environ, HF_HUB_OFFLINE="1", DISABLE_VERSION_CHECK="1")
    subprocess.run([cli, "train", str(out / "config.yaml")], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    log = [json.loads(line) for line in (out / "run" / "trainer_log.jsonl").read_text().splitlines()]

    def seconds(stamp: str) -> int:
        h, m, sec = (int(x) for x in stamp.split(":"))
        return 3600 * h + 60 * m + sec

    first, last = log[WARMUP_STEPS], log[-1]
    return BATCH * (last["current_steps"] - first["current_steps"]) / max(
        1, seconds(last["elapsed_time"]) - seconds(first["elapsed_time"]))


def run_baseline(model_path: Path, rows: list[dict], steps: int, pad_to: int | None) -> float:
    """A plain loop: right-padded batches (to the longest row, or to `pad_to`), forward, backward, AdamW.
    Tokens/s counts real tokens only, as the worker's does; the median step, as for the worker."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from easytune.train.sft import encode_row
    from easytune.train.worker import pick_device

    device = pick_device("auto")  # the C library's allocator as it comes, as in a plain script
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, use_safetensors=True, dtype=torch.float32).to(device)
    model = get_peft_model(model, LoraConfig(r=LORA_R, lora_alpha=2 * LORA_R, lora_dropout=0.05,
                                             target_modules="all-linear", task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4)
    examples = [e for row in rows for e in encode_row(tokenizer, row, CUTOFF)]
    random.Random(0).shuffle(examples)
    rates = []
    for step in range(steps):
        chunk = [examples[(step * BATCH + i) % len(examples)] for i in range(BATCH)]
        width = pad_to or max(len(e["input_ids"]) for e in chunk)
        batch = {
            "input_ids": torch.tensor([e["input_ids"] + [0] * (width - len(e["input_ids"])) for e in chunk]),
            "labels": torch.tensor([e["labels"] + [-100] * (width - len(e["labels"])) for e in chunk]),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                                            for e in chunk]),
        }
        batch = {k: v.to(device) for k, v in batch.items()}
        started = time.perf_counter()
        model(**batch, use_cache=False).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= WARMUP_STEPS:
            rates.append(sum(len(e["input_ids"]) for e in chunk) / (time.perf_counter() - started))
    return statistics.median(rates)


def bench_methods(name: str, steps: int, rows_count: int, methods: list[str]) -> list[dict]:
    """The worker alone with each method (e.g. lora, qlora, full on a GPU): speed, loss, what it delivered."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory(prefix="easytune-bench-") as tmp:
        work = Path(tmp)
        model_path = model_folder(name, work)
        rows = alpaca_like_rows(AutoTokenizer.from_pretrained(model_path), rows_count)
        train_file = work / "rows.jsonl"
        train_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        return [{"model": name, "method": method, **run_worker(model_path, train_file, steps, work, method=method)}
                for method in methods]


def model_folder(name: str, work: Path) -> Path:
    return TINY if name == "tiny" else build_llama90m(work / "llama90m") if name == "llama90m" else Path(name)


def cpu_bf16_here(model_path: Path) -> bool:
    """What precision auto becomes for this model on this CPU: the jobs service's rule on rates measured now."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from easytune.models.calibrate import bf16_pays, measure

    with torch.device("meta"):  # the shape without the weights
        params = sum(p.numel() for p in AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
                     .parameters())
    return bf16_pays({dtype: measure("cpu", dtype) for dtype in ("fp32", "bf16")}, params)


def loss_gap(a: list[float], b: list[float]) -> float:
    """The largest per-step difference of two loss curves, relative to the second."""
    return max(abs(x - y) / y for x, y in zip(a, b, strict=False))


def bench(name: str, steps: int, rows_count: int) -> dict:
    from transformers import AutoTokenizer

    from easytune.train.worker import pick_device

    with tempfile.TemporaryDirectory(prefix="easytune-bench-") as tmp:
        work = Path(tmp)
        model_path = model_folder(name, work)
        device = pick_device("auto")
        bf16 = device.type == "cpu" and cpu_bf16_here(model_path)
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        rows = alpaca_like_rows(tokenizer, rows_count)
        train_file = work / "rows.jsonl"
        train_file.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        lengths = [len(tokenizer(tokenizer.apply_chat_template(r["messages"], tokenize=False))["input_ids"])
                   for r in rows]
        mean_len = sum(lengths) / len(lengths)
        flops_per_token, matmul_params = training_flops_per_token(model_path, mean_len)
        flops_6n, _ = training_flops_per_token(model_path, mean_len, per_param=6)
        load = os.getloadavg()[0]
        peak = matmul_peak(device, bf16)
        worker = run_worker(model_path, train_file, steps, work, cpu_bf16=bf16)
        fp32 = run_worker(model_path, train_file, steps, work, precision="fp32") if bf16 else None
        unpacked = run_worker(model_path, train_file, steps, work, packing=False, cpu_bf16=bf16)
        padded = run_baseline(model_path, rows, steps, None)
        padded_full = run_baseline(model_path, rows, min(steps, 6), CUTOFF)
        cli = llamafactory_cli()
        theirs = {checkpointing: run_llamafactory(cli, model_path, rows, steps, work, checkpointing)
                  for checkpointing in (True, False)} if cli else {}
    peak = max(peak, matmul_peak(device, bf16))  # measured low, the peak would flatter the share
    return {"model": name, "matmul_params_m": matmul_params / 1e6, "mean_tokens": mean_len, "steps": steps,
            "dtype": "bf16" if bf16 or device.type == "cuda" else "fp32",
            "fp32_tokens_per_s": fp32 and fp32["tokens_per_s"],
            "fp32_loss_gap_pct": fp32 and 100 * loss_gap(worker["losses"], fp32["losses"]),
            "worker_tokens_per_s": worker["tokens_per_s"], "worker_spread": worker["spread"],
            "worker_unpacked_tokens_per_s": unpacked["tokens_per_s"],
            "padded_tokens_per_s": padded,
            "padded_to_cutoff_tokens_per_s": padded_full,
            "speedup": worker["tokens_per_s"] / padded,
            "worker_gflops": worker["tokens_per_s"] * flops_per_token / 1e9,
            "peak_gflops": peak / 1e9, "mfu_pct": 100 * worker["tokens_per_s"] * flops_per_token / peak,
            "mfu_6n_pct": 100 * worker["tokens_per_s"] * flops_6n / peak,
            "cf_share_pct": 100 * worker["cf_s"] / worker["worker_s"], "cf_s": worker["cf_s"],
            "cf_passes": worker["cf_passes"],
            "worker_wall_s": worker["wall_s"], "loss_first_last": worker["loss_first_last"],
            "worker_rows_per_s": worker["tokens_per_s"] / mean_len,
            "llamafactory_rows_per_s": theirs.get(True), "llamafactory_no_checkpointing_rows_per_s": theirs.get(False),
            "load_before": load, "load_after": os.getloadavg()[0]}


def side_by_side(r: dict) -> str:
    """The worker beside LLaMA-Factory in rows/s of the training loop, against the targets (≥ 3× its default,
    ≥ 2× it without gradient checkpointing)."""
    ours = r["worker_rows_per_s"]
    if r["llamafactory_rows_per_s"] is None:
        return (f"           worker {ours:.2f} rows/s · LLaMA-Factory: llamafactory-cli not found (pip install "
                f"llamafactory, or set EASYTUNE_LLAMAFACTORY_CLI), not measured")
    default, plain = r["llamafactory_rows_per_s"], r["llamafactory_no_checkpointing_rows_per_s"]
    return (f"           rows/s: worker {ours:.2f} · LLaMA-Factory default {default:.2f} → {ours / default:.2f}× "
            f"(target ≥ 3×) · without gradient checkpointing {plain:.2f} → {ours / plain:.2f}× (target ≥ 2×)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny,llama90m", help="comma-separated: tiny, llama90m")
    parser.add_argument("--steps", type=int, default=0,
                        help="training steps per run (default: 40 tiny, 32 90M; 16 90M with --methods)")
    parser.add_argument("--json", action="store_true", help="one JSON document instead of the table")
    parser.add_argument("--methods", help="instead: the worker alone with each of these methods (lora,qlora,full)")
    args = parser.parse_args(argv)
    from easytune.train.worker import pick_device

    if args.methods:
        for name in args.models.split(","):
            steps = args.steps or (40 if name == "tiny" else 16)
            for r in bench_methods(name, steps, max(64, steps * BATCH + 16), args.methods.split(",")):
                print(json.dumps(r), flush=True)
        return 0

    device = pick_device("auto")
    results = []
    for name in args.models.split(","):
        steps = args.steps or (40 if name == "tiny" else 32)
        results.append(bench(name, steps, rows_count=max(64, steps * BATCH + 16)))
        if not args.json:
            r = results[-1]
            print(f"{r['model']:>9}: {r['matmul_params_m']:.1f}M matmul params, rows of {r['mean_tokens']:.0f} tokens "
                  f"on average, {r['steps']} steps on {device.type} ({torch.get_num_threads()} threads)\n"
                  f"           worker {r['worker_tokens_per_s']:.0f} tokens/s in {r['dtype']} (steps "
                  f"{r['worker_spread'][0]:.0f}–{r['worker_spread'][1]:.0f}; packing off: "
                  f"{r['worker_unpacked_tokens_per_s']:.0f}) · plain padded loop {r['padded_tokens_per_s']:.0f} "
                  f"(padded to {CUTOFF}: {r['padded_to_cutoff_tokens_per_s']:.0f}) → {r['speedup']:.2f}× "
                  f"the plain loop\n"
                  + (f"           fp32 worker {r['fp32_tokens_per_s']:.0f} tokens/s → bf16 "
                     f"{r['worker_tokens_per_s'] / r['fp32_tokens_per_s']:.2f}× faster; loss curves at most "
                     f"{r['fp32_loss_gap_pct']:.2f}% apart\n" if r["fp32_tokens_per_s"] else "")
                  + f"           {r['worker_gflops']:.1f} GFLOP/s achieved of {r['peak_gflops']:.1f} measured "
                  f"matmul peak: {r['mfu_pct']:.0f}% counted as 4·N (what LoRA computes), {r['mfu_6n_pct']:.0f}% "
                  f"under the 6·N convention\n"
                  f"           forgetting score {r['cf_s']:.1f} s ({r['cf_passes']} scorings, the base pass in the "
                  f"first), {r['cf_share_pct']:.1f}% of the worker's "
                  f"{r['worker_wall_s']:.0f} s · loss {r['loss_first_last'][0]:.3f} → {r['loss_first_last'][1]:.3f}"
                  f" · load average {r['load_before']:.1f} before, {r['load_after']:.1f} after\n"
                  + side_by_side(r), flush=True)
    if args.json:
        print(json.dumps({"device": str(device), "threads": torch.get_num_threads(), "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
