"""The training worker: `python -m easytune.train <job_dir>`.

The only module that imports the training stack at load. It reads `plan.yaml` (the TrainingPlan)
and `job.json` (the paths the orchestrator resolved) from the job folder, trains, writes events
(easytune.train.events) and leaves the adapter (or full model) in the folder. It reads top to
bottom: setup, data, model, one visible loop, save.
"""

from __future__ import annotations

import json
import math
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from easytune.health import forgetting_level, thresholds
from easytune.i18n import UserError
from easytune.plan.schema import TrainingPlan
from easytune.train.evaluate import ForgettingScore, mean_loss, retention_lines
from easytune.train.events import STOP_FILE, EventWriter
from easytune.train.sft import DEFAULT_CHAT_TEMPLATE, batches, encode_row, encode_text


def pick_device(wanted: str) -> torch.device:
    if wanted != "auto":
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        return torch.device("xpu")
    return torch.device("cpu")


def pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":  # bf16 where the hardware does it natively, else full precision
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 or device.type == "xpu" else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def lr_at(step: int, plan: TrainingPlan, total: int) -> float:
    """Linear warmup, then cosine / linear decay to 10% of the peak (or constant)."""
    warmup = int(plan.warmup_ratio * total)
    if step < warmup:
        return plan.learning_rate * (step + 1) / warmup
    if plan.scheduler == "constant":
        return plan.learning_rate
    progress = (step - warmup) / max(1, total - warmup)
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if plan.scheduler == "cosine" else 1 - progress
    return plan.learning_rate * (0.1 + 0.9 * decay)


def read_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                row = json.loads(line)
                row.setdefault("line", number)
                rows.append(row)
    return rows


class StopRequest:
    """Set by SIGTERM or by the orchestrator's STOP file; checked once per step."""

    def __init__(self, job_dir: Path):
        self.file = job_dir / STOP_FILE
        self.signalled = False
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, *_):
        self.signalled = True

    def __bool__(self) -> bool:
        return self.signalled or self.file.exists()


def train(job_dir: Path, events: EventWriter) -> str:
    stop = StopRequest(job_dir)
    plan = TrainingPlan.load(job_dir / "plan.yaml")
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    events.state("PREPARING")
    random.seed(plan.seed)
    torch.manual_seed(plan.seed)
    device = pick_device(plan.device)
    dtype = pick_dtype(plan.precision, device)
    if device.type == "cpu":  # resident memory then follows live tensors, as the fit estimate assumes
        from easytune.models.hardware import tune_cpu_allocator

        tune_cpu_allocator()
    events.log("train.log.device", device=str(device), dtype=str(dtype).replace("torch.", ""))

    # ---- data: chat template, loss only on assistant turns ----
    tokenizer = AutoTokenizer.from_pretrained(job["model_path"])
    if not tokenizer.chat_template:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        events.log("train.log.default_template", level="warning")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = read_rows(Path(job["train_file"]))
    examples = [e for row in rows for e in encode_row(tokenizer, row, plan.max_seq_len)]
    if job.get("val_file"):
        val = [e for row in read_rows(Path(job["val_file"])) for e in encode_row(tokenizer, row, plan.max_seq_len)]
        train_set = examples
    else:  # deterministic hold-out, so the same plan always validates on the same rows
        order = list(range(len(examples)))
        random.Random(plan.seed).shuffle(order)
        n_val = int(len(examples) * plan.val_ratio)
        val = [examples[i] for i in order[:n_val]]
        train_set = [examples[i] for i in order[n_val:]]
    if not train_set:
        raise UserError("train.error.no_rows", path=job["train_file"])
    if plan.retention_ratio > 0:  # knowledge retention: general text keeps what the model already knows
        general = [e for line in retention_lines(thresholds()["forgetting"]["reference_lines"])
                   for e in encode_text(tokenizer, {"text": line}, plan.max_seq_len)]
        wanted = round(len(train_set) * plan.retention_ratio / (1 - plan.retention_ratio))
        random.Random(plan.seed).shuffle(general)
        train_set = train_set + (general * (wanted // max(1, len(general)) + 1))[:wanted]
        events.log("train.log.retention", general=wanted, pct=round(plan.retention_ratio * 100))
    events.log("train.log.data", train=len(train_set), val=len(val))

    # ---- model ----
    model = AutoModelForCausalLM.from_pretrained(job["model_path"], use_safetensors=True, dtype=dtype)
    model.to(device)
    if plan.method == "lora":
        from peft import LoraConfig, get_peft_model

        from easytune.train.modules import lora_targets

        config = LoraConfig(r=plan.lora_r, lora_alpha=plan.lora_alpha, lora_dropout=plan.lora_dropout,
                            target_modules=lora_targets(model, plan.target_modules), task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    events.log("train.log.params", trainable=n_trainable, total=sum(p.numel() for p in model.parameters()))
    optimizer = torch.optim.AdamW(params, lr=plan.learning_rate, weight_decay=plan.weight_decay)

    forgetting = ForgettingScore(model, tokenizer, model_path=job["model_path"], max_len=min(plan.max_seq_len, 256),
                                 per_language=thresholds()["forgetting"]["reference_lines"],
                                 batch_size=plan.batch_size, pad_id=pad_id, device=device,
                                 cache_dir=job.get("cache_dir"), adapter=plan.method == "lora")

    def evaluate(step: int) -> dict:
        result = {"step": step, **forgetting.score()}
        if val:
            result["val_loss"] = mean_loss(model, val, plan.batch_size, pad_id, device)
        events.emit("eval", **result)
        return result

    steps_per_epoch = math.ceil(len(train_set) / (plan.batch_size * plan.grad_accum))
    total = plan.max_steps or max(1, math.ceil(plan.epochs * steps_per_epoch))
    eval_every = plan.eval_every or max(1, total // 10)
    events.state("RUNNING")
    evaluate(0)

    # ---- the loop ----
    def micro_batches():
        epoch = 0
        while True:
            rng = random.Random(plan.seed + epoch)
            order = list(train_set)
            rng.shuffle(order)
            yield from batches(order, plan.batch_size, pad_id, device)
            epoch += 1

    stream = micro_batches()
    for step in range(total):
        if stop:
            save(model, tokenizer, job_dir, plan, events)
            return "STOPPED"
        started = time.perf_counter()
        lr = lr_at(step, plan, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum, tokens = 0.0, 0
        for _ in range(plan.grad_accum):
            batch = next(stream)
            loss = model(**batch, use_cache=False).loss / plan.grad_accum
            if not torch.isfinite(loss):
                raise UserError("train.error.diverged", step=step + 1)
            loss.backward()
            loss_sum += loss.item()
            tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - started
        events.emit("step", step=step + 1, total_steps=total, epoch=round((step + 1) / steps_per_epoch, 3),
                    loss=round(loss_sum, 5), lr=lr, tokens_per_s=round(tokens / elapsed, 1))
        if (step + 1) % eval_every == 0 or step + 1 == total:
            result = evaluate(step + 1)
            if plan.forgetting_guard and forgetting_level(result["cf_pct"], result["cf_score"]) == "error":
                events.log("train.log.forgetting_stop", level="warning", pct=round(result["cf_pct"], 1),
                           limit=thresholds()["forgetting"]["stop_pct"])
                save(model, tokenizer, job_dir, plan, events)
                return "STOPPED"

    save(model, tokenizer, job_dir, plan, events)
    return "COMPLETED"


def save(model, tokenizer, job_dir: Path, plan: TrainingPlan, events: EventWriter) -> None:
    kind = "adapter" if plan.method == "lora" else "model"
    out = job_dir / kind
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)  # the chat template travels with the weights
    events.emit("artifact", kind=kind, path=kind)


def main(argv: list[str]) -> int:
    job_dir = Path(argv[0]).resolve()
    events = EventWriter(job_dir)
    try:
        final = train(job_dir, events)
    except UserError as exc:
        events.emit("error", code=exc.key, params=exc.params, detail=str(exc))
        events.state("FAILED", reason=exc.key, **exc.params)
        return 1
    except torch.OutOfMemoryError as exc:
        events.emit("error", code="train.error.oom", params={}, detail=str(exc))
        events.state("FAILED", reason="train.error.oom")
        return 1
    except Exception as exc:  # noqa: BLE001 — the job must say why it failed, whatever it was
        detail = "".join(traceback.format_exception(exc))
        events.emit("error", code="train.error.crash", params={"detail": str(exc)[:500]}, detail=detail)
        events.state("FAILED", reason="train.error.crash", detail=str(exc)[:500])
        return 1
    events.state(final)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
