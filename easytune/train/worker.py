"""The training worker: `python -m easytune.train <job_dir>` (or several of it under `accelerate launch`).

The only module that imports the training stack at load. It reads `plan.yaml` (the TrainingPlan)
and `job.json` (the paths the orchestrator resolved) from the job folder, trains, writes events
(easytune.train.events), checkpoints (easytune.train.checkpoints) and leaves the adapter (or full
model) in the folder. It reads top to bottom: setup, data, model, start or resume, one visible loop,
deliver. One loop serves every objective: supervised answers (sft), raw text (pretrain) and
preference pairs (dpo) differ only in how a micro-batch becomes a loss.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

import torch

from easytune.health import thresholds
from easytune.i18n import UserError
from easytune.job_folder import JobFolder
from easytune.models.calibrate import auto_precision
from easytune.models.sources import load_config, load_safe, load_tokenizer
from easytune.plan.schema import TrainingPlan
from easytune.train import dpo, kto, rehearsal
from easytune.train.attention import use_segment_attention
from easytune.train.checkpoints import Checkpoints, check_space, load_weights, raise_if_disk_full
from easytune.train.evaluate import ForgettingScore, mean_loss, retention_lines
from easytune.train.events import STOP_FILE, EventWriter
from easytune.train.failures import is_out_of_memory, out_of_memory
from easytune.train.guard import PAUSE_REASON, forgetting_pause
from easytune.train.loss import keeps_logits, scored_loss
from easytune.train.objective import resolve_objective
from easytune.train.packing import collate, packing_is_exact, padding_share
from easytune.train.ranks import Ranks
from easytune.train.sft import DEFAULT_CHAT_TEMPLATE, IGNORE, encode_row, encode_text
from easytune.train.tokens import load_examples

ADAPTER_METHODS = ("lora", "qlora")  # what trains an adapter and delivers `adapter/`


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


def pick_dtype(precision: str, device: torch.device, cpu_bf16: bool = False) -> torch.dtype:
    """The dtype the model's weights are read in. "auto": bf16 where the hardware does it natively — on a CPU
    where the job recorded that its bf16 products measured clearly faster (easytune.models.calibrate); an
    adapter and its optimiser state stay fp32 either way (peft keeps adapter weights in fp32)."""
    if precision == "auto":
        precision = auto_precision(device.type, device.type == "cuda" and torch.cuda.is_bf16_supported(), cpu_bf16)
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def load_four_bit(model_path: str, dtype: torch.dtype, device: torch.device, events: EventWriter):
    """QLoRA's base: the frozen weights stored in 4 bits (NF4, double-quantised) by bitsandbytes, on
    one CUDA device; the adapter trained on it in full precision is an ordinary LoRA adapter."""
    if device.type != "cuda":
        raise UserError("train.error.qlora_device", device=device.type)
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise UserError("train.error.qlora_missing", detail=str(exc)) from exc
    from transformers import BitsAndBytesConfig

    compute = dtype if dtype != torch.float32 else (
        torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                bnb_4bit_compute_dtype=compute)
    index = device.index if device.index is not None else torch.cuda.current_device()
    model = load_safe(model_path, dtype=compute, quantization_config=config, device_map={"": index})
    # Norms and the output head stay in the compute dtype: peft's prepare_model_for_kbit_training would
    # upcast them to fp32, which makes every activation after a norm fp32 (measured: 37-66% more peak memory).
    events.log("train.log.qlora", dtype=str(compute).replace("torch.", ""),
               gb=round(torch.cuda.memory_allocated(index) / 2**30, 2))
    return model


def dataset_kind(job: dict) -> str:
    """The kind of the dataset's rows, as the jobs service resolved it (or from the first row)."""
    if job.get("dataset_kind"):
        return job["dataset_kind"]
    with open(job["train_file"], encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return json.loads(line).get("kind", "sft")
    return "sft"


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


class Silent:
    """The events of a process that is not the main one: it trains, the main process reports."""

    def emit(self, *args, **kwargs) -> None:
        pass

    state = log = emit


def continue_adapter(model, folder: str) -> None:
    """Put the previous version's LoRA weights into this run's adapter: the same layers and rank (the plan was
    copied with them), so every saved tensor has its place."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    saved = load_file(str(Path(folder) / "adapter_model.safetensors"))
    try:
        loaded = set_peft_model_state_dict(model, saved)
    except RuntimeError as exc:  # a shape that differs
        raise UserError("train.error.adapter_mismatch", path=folder, name=str(exc)[:200]) from None
    if loaded.unexpected_keys:
        raise UserError("train.error.adapter_mismatch", path=folder, name=loaded.unexpected_keys[0])


def tune_allocator(plan: TrainingPlan, objective: str, model_path: str, dtype: torch.dtype, processes: int) -> bool:
    """On a CPU, reuse freed tensor memory (faster) where the plan's estimated peak leaves room for the
    heap's fragments; otherwise give it back at once, as the fit estimate assumes
    (hardware.tune_cpu_allocator). True: reused."""
    import psutil

    from easytune.models.estimate import as_shape, estimate_memory
    from easytune.models.hardware import MALLOC_EXACT, MALLOC_REUSE, cpu_allocator_threshold, tune_cpu_allocator

    try:
        shape = as_shape(load_config(model_path).to_dict())
        # a preference row is two sequences; a labelled answer too (with its mismatched one)
        rows = plan.batch_size * (2 if objective in ("dpo", "kto") else 1)
        peak = estimate_memory(shape, plan.method, plan.max_seq_len, rows, plan.grad_checkpointing,
                               str(dtype).replace("torch.", ""), plan.lora_r, plan.target_modules,
                               device="cpu", grad_accum=plan.grad_accum, lora_dropout=plan.lora_dropout,
                               padded=not plan.packing).total
    except (OSError, ValueError, TypeError):  # a shape the estimator cannot read: no room assumed
        peak = None
    threshold = (cpu_allocator_threshold(peak * processes, psutil.virtual_memory().available)
                 if peak else MALLOC_EXACT)
    tune_cpu_allocator(threshold)
    return threshold == MALLOC_REUSE


def train(job_dir: Path, events: EventWriter, ranks: Ranks) -> str | tuple[str, str, dict]:
    """Train the job; returns its final state, or (state, reason key, params) when it ends for a reason."""
    stop = StopRequest(job_dir)
    folder = JobFolder(job_dir)
    plan, job = folder.plan(), folder.resolved()
    events.state("PREPARING")
    random.seed(plan.seed)
    torch.manual_seed(plan.seed)
    device = pick_device(plan.device)
    if ranks.world > 1 and device.type not in ("cpu", "cuda"):  # DDP's backends: gloo (CPU) and NCCL
        raise UserError("train.error.processes_device", device=device.type)
    if device.type == "cuda" and ranks.world > torch.cuda.device_count():
        raise UserError("train.error.too_many_processes", processes=ranks.world, gpus=torch.cuda.device_count())
    device = ranks.start(device)
    dtype = pick_dtype(plan.precision, device, cpu_bf16=bool(job.get("cpu_bf16")) and plan.method in ADAPTER_METHODS)
    # decided when the job was created (jobs.create_job); resolved here only for a job from before that
    objective = job.get("objective") or resolve_objective(plan.objective, dataset_kind(job), job.get("dataset", ""))
    if device.type == "cpu":
        events.log("train.log.memory_reused" if tune_allocator(plan, objective, job["model_path"], dtype, ranks.world)
                   else "train.log.memory_exact")
        if ranks.world > 1:  # the cores are shared out between the processes
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // ranks.world))
    events.log("train.log.device", device=str(device), dtype=str(dtype).replace("torch.", ""))
    if ranks.world > 1:
        events.log("train.log.processes", processes=ranks.world, backend=ranks.backend)

    # ---- data: token ids + labels (loss only on what is to be learned), cached between runs ----
    tokenizer = load_tokenizer(job["model_path"])
    if not tokenizer.chat_template:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        events.log("train.log.default_template", level="warning")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    events.log(f"train.log.objective_{objective}")
    started = time.perf_counter()
    examples, val, cached = load_examples(tokenizer, job, plan.max_seq_len, objective)
    events.log("train.log.tokens_cached" if cached else "train.log.tokenized", examples=len(examples),
               seconds=round(time.perf_counter() - started, 1))
    train_set, val = examples, val or []  # (the job's files are already split: easytune.datasets.job_split)
    if not train_set:
        raise UserError("train.error.no_pairs" if objective == "dpo" else "train.error.no_rows", path=job["train_file"])

    # ---- model ----
    adapter = plan.method in ADAPTER_METHODS
    if plan.method == "qlora":
        model = load_four_bit(job["model_path"], dtype, device, events)
    else:
        model = load_safe(job["model_path"], dtype=dtype)
        model.to(device)
    if plan.retention_ratio > 0 and objective in ("dpo", "kto"):  # general text has no good or bad answer
        events.log("train.log.retention_not_for_dpo", level="warning")
    elif plan.retention_ratio > 0:  # what the model already knows, kept by training on it alongside
        started = time.perf_counter()
        wanted = round(len(train_set) * plan.retention_ratio / (1 - plan.retention_ratio))
        own = objective == "sft" and any(rehearsal.requests())
        if own:  # its own answers to general questions and everyday requests, in the data's language
            answers = [[token for token in e["labels"] if token != IGNORE] for e in train_set[:200]]
            language = rehearsal.language_of([tokenizer.decode(ids[:200]) for ids in answers])
            rows = rehearsal.rehearsal_rows(model, tokenizer, model_path=job["model_path"], language=language,
                                            cache_dir=job.get("cache_dir"), count=wanted, seed=plan.seed)
            general = [e for row in rows for e in encode_row(tokenizer, row, plan.max_seq_len)]
        else:  # raw text for raw text
            general = [e for line in retention_lines(thresholds()["forgetting"]["reference_lines"])
                       for e in encode_text(tokenizer, {"text": line}, plan.max_seq_len)]
        random.Random(plan.seed).shuffle(general)
        train_set = train_set + (general * (wanted // max(1, len(general)) + 1))[:wanted]
        events.log("train.log.retention_rehearsal" if own else "train.log.retention", general=wanted,
                   pct=round(plan.retention_ratio * 100), seconds=round(time.perf_counter() - started, 1))
    events.log("train.log.data", train=len(train_set), val=len(val))
    base, attention = model, model.config._attn_implementation  # (the adapter, if any, wraps `base`)
    if plan.packing:  # each packed sequence attends to itself alone: no compute on cross-sequence blocks
        use_segment_attention(base)
    if plan.grad_checkpointing:  # activations recomputed in the backward pass instead of kept
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        events.log("train.log.grad_checkpointing")
    if adapter:
        from peft import LoraConfig, get_peft_model

        from easytune.train.modules import lora_targets

        config = LoraConfig(r=plan.lora_r, lora_alpha=plan.lora_alpha, lora_dropout=plan.lora_dropout,
                            target_modules=lora_targets(model, plan.target_modules), task_type="CAUSAL_LM")
        model = get_peft_model(model, config)
        if job.get("start_adapter"):  # a new version trains on from the last one's adapter
            continue_adapter(model, job["start_adapter"])
            events.log("train.log.continued", path=job["start_adapter"], version=job.get("version", 2))
        if device.type == "cpu":  # a mask from random bytes: the default one is a fifth of a CPU step
            from easytune.train.dropout import use_byte_dropout

            use_byte_dropout(model)
    pack = plan.packing and packing_is_exact(model, device)
    if plan.packing and not pack:
        base.set_attn_implementation(attention)
        events.log("train.log.packing_unsupported", level="warning")
    elif pack:
        events.log("train.log.packing", pct=round(100 * padding_share(train_set, plan.batch_size)))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    events.log("train.log.params", trainable=n_trainable, total=sum(p.numel() for p in model.parameters()))
    optimizer = torch.optim.AdamW(params, lr=plan.learning_rate, weight_decay=plan.weight_decay)

    forgetting = ForgettingScore(model, tokenizer, model_path=job["model_path"], max_len=min(plan.max_seq_len, 256),
                                 per_language=thresholds()["forgetting"]["reference_lines"],
                                 batch_size=plan.batch_size, pad_id=pad_id, device=device,
                                 cache_dir=job.get("cache_dir"), adapter=adapter, pack=pack, ranks=ranks)
    if objective == "dpo":  # the reference model's scores, before any weight moves
        started = time.perf_counter()
        for pairs in (train_set, val):
            dpo.add_reference_logps(model, pairs, plan.batch_size, pad_id, device, pack,
                                    adapter=adapter, ranks=ranks)
        events.log("train.log.dpo_reference", pairs=len(train_set) + len(val), beta=plan.dpo_beta,
                   seconds=round(time.perf_counter() - started, 1))
    elif objective == "kto":  # the reference model's scores of each answer and its mismatched one
        started = time.perf_counter()
        for labelled in (train_set, val):
            if labelled:
                kto.pair_with_next(labelled)
                kto.add_reference_logps(model, labelled, plan.batch_size, pad_id, device, pack, plan.max_seq_len,
                                        adapter=adapter, ranks=ranks)
        events.log("train.log.kto_reference", answers=len(train_set) + len(val), beta=plan.dpo_beta,
                   good=sum(e["desirable"][0] for e in train_set), seconds=round(time.perf_counter() - started, 1))

    cf_share = thresholds()["forgetting"]["max_time_share"]
    training_s = 0.0  # the steps' own time, evaluations left out

    def evaluate(step: int, last: bool = False) -> dict:
        """Validation loss; the forgetting score before training, at the first evaluation and the last, and
        in between as often as its time budget allows (a share of the training time)."""
        scored = ranks.any(step == 0 or last or forgetting.due(training_s, cf_share))  # every process scores, or none
        result = {"step": step, **(forgetting.score(untrained=step == 0) if scored else {})}  # step 0: only before
        if val:
            started = time.perf_counter()
            if objective == "dpo":
                result.update(dpo.evaluate_pairs(model, val, plan.batch_size, pad_id, device, pack,
                                                 plan.dpo_beta, ranks))
            elif objective == "kto":
                result.update(kto.evaluate_labelled(model, val, plan.batch_size, pad_id, device, pack,
                                                    plan.dpo_beta, plan.max_seq_len, ranks))
            else:
                result["val_loss"] = mean_loss(model, val, plan.batch_size, pad_id, device, pack, ranks)
            result["val_s"] = round(time.perf_counter() - started, 3)
        events.emit("eval", **result)
        return result

    keep_logits = keeps_logits(model)  # (DDP, when it wraps the model below, passes the argument on)

    def forward(chunk: list[dict]) -> tuple[torch.Tensor, int, dict]:
        """One micro-batch → (mean loss, tokens computed, objective-specific figures)."""
        if objective == "dpo":
            chosen, rejected = dpo.pair_logps(train_model, chunk, pad_id, device, pack)
            ref_chosen, ref_rejected = dpo.references(chunk, device)
            loss, stats = dpo.dpo_loss(chosen.float(), rejected.float(), ref_chosen, ref_rejected, plan.dpo_beta)
            return loss, sum(len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in chunk), stats
        if objective == "kto":
            answer, mismatched = kto.logps(train_model, chunk, pad_id, device, pack, plan.max_seq_len)
            ref, ref_kl, desirable = kto.references(chunk, device)
            loss, stats = kto.kto_loss(answer.float(), mismatched.float(), ref, ref_kl, desirable, plan.dpo_beta)
            return loss, sum(2 * len(e["prompt_ids"]) + len(e["answer_ids"]) + len(e["kl_answer_ids"])
                             for e in chunk), stats
        batch, _ = collate([(e["input_ids"], e["labels"]) for e in chunk], pad_id, device, pack)
        return scored_loss(train_model, batch, keep_logits), sum(len(e["input_ids"]) for e in chunk), {}

    # ---- start, or resume from a checkpoint ----
    micro_per_epoch = math.ceil(len(train_set) / plan.batch_size)
    steps_per_epoch = math.ceil(len(train_set) / (plan.batch_size * plan.grad_accum * ranks.world))
    total = plan.max_steps or max(1, math.ceil(plan.epochs * steps_per_epoch))
    eval_every = plan.eval_every or max(1, total // 10)
    checkpoints = Checkpoints(JobFolder(job_dir).checkpoints, plan.keep_checkpoints)
    start_step, consumed = 0, 0  # optimizer steps done; micro-batches taken from the stream (all processes)
    if job.get("resume_from"):
        state = checkpoints.load(job["resume_from"], model, optimizer)
        if ranks.main:
            checkpoints.forget_after(state["step"])  # they belong to the run being replaced
        start_step, consumed, total = state["step"], state["micro_batches"], state["total_steps"]
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    train_model = model
    if ranks.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    events.state("RUNNING")
    if start_step:
        events.log("train.log.resumed", step=start_step, total=total)
    else:
        evaluate(0)

    # Every process keeps the same account of what is saved, so all take the same branches below.
    saved_step, best_val_loss = (start_step or None), checkpoints.index["best_val_loss"]

    def save_checkpoint(step: int, val_loss: float | None) -> None:
        nonlocal saved_step
        saved_step = step
        if ranks.main:
            rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
            if device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(device)
            state = {"step": step, "micro_batches": consumed, "total_steps": total, "seed": plan.seed, "rng": rng,
                     "scheduler": {"kind": plan.scheduler, "step": step, "total_steps": total}}  # lr_at() resumes it
            events.emit("checkpoint", **checkpoints.save(step, model, optimizer, state, val_loss))

    def finish(steps_done: int, final: str) -> str:
        """Checkpoint the end point, then deliver the best weights (or the last) as the job's result."""
        if saved_step != steps_done:
            save_checkpoint(steps_done, None)
        if ranks.main:
            deliver(steps_done)
        return final

    def deliver(steps_done: int) -> None:
        best = checkpoints.best_step
        if plan.keep_best and val and best is not None and best != steps_done:
            load_weights(model, checkpoints.folder / f"step-{best}")
            events.log("train.log.delivered_best", step=best, last=steps_done,
                       val_loss=round(checkpoints.index["best_val_loss"], 4))
        elif not val:
            events.log("train.log.delivered_last_no_val", step=steps_done)
        elif plan.keep_best:
            events.log("train.log.delivered_last_best", step=steps_done)
        else:
            events.log("train.log.delivered_last", step=steps_done)
        base.set_attn_implementation(attention)  # the saved model loads with its usual attention
        save(model, tokenizer, job_dir, plan, events)

    # ---- the loop ----
    def micro_batches(start: int):
        """The endless shuffled stream from micro-batch `start` on; with several processes each takes
        every world-th micro-batch, so together they read the data once per epoch."""
        shuffled_epoch, order = -1, []
        for index in range(start + ranks.rank, 2**62, ranks.world):
            epoch, k = divmod(index, micro_per_epoch)
            if epoch != shuffled_epoch:
                order = list(train_set)
                random.Random(plan.seed + epoch).shuffle(order)
                shuffled_epoch = epoch
            yield order[k * plan.batch_size:(k + 1) * plan.batch_size]

    stream = micro_batches(consumed)
    for step in range(start_step, total):
        if ranks.any(stop):
            return finish(step, "STOPPED")
        started = time.perf_counter()
        lr = lr_at(step, plan, total)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum, tokens, figures = 0.0, 0, {}
        for micro in range(plan.grad_accum):
            last = micro == plan.grad_accum - 1  # gradients are averaged across processes once, at the last
            with contextlib.nullcontext() if last or ranks.world == 1 else train_model.no_sync():
                loss, n, stats = forward(next(stream))
                (loss / plan.grad_accum).backward()
            # read after the backward pass: a read before it would make a GPU finish the forward pass before
            # the backward one is even queued; the weights only change at optimizer.step(), below
            value = loss.item()
            if not math.isfinite(value):
                raise UserError("train.error.diverged", step=step + 1)
            loss_sum += value / plan.grad_accum
            tokens += n
            for name, value in stats.items():
                figures[name] = figures.get(name, 0.0) + value / plan.grad_accum
        consumed += plan.grad_accum * ranks.world
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if ranks.world > 1:  # the step's figures over all processes: mean loss, total tokens
            loss_sum, tokens, *values = ranks.sum(loss_sum, tokens, *figures.values())
            loss_sum, figures = loss_sum / ranks.world, {k: v / ranks.world for k, v in zip(figures, values)}
        elapsed = time.perf_counter() - started
        training_s += elapsed
        events.emit("step", step=step + 1, total_steps=total, epoch=round((step + 1) / steps_per_epoch, 3),
                    loss=round(loss_sum, 5), lr=lr, tokens=int(tokens), tokens_per_s=round(tokens / elapsed, 1),
                    **{k: round(v, 5) for k, v in figures.items()})
        done = step + 1
        result = evaluate(done, last=done == total) if done % eval_every == 0 or done == total else None
        val_loss = result.get("val_loss") if result else None
        new_best = val_loss is not None and (best_val_loss is None or val_loss < best_val_loss)
        best_val_loss = val_loss if new_best else best_val_loss
        due = done % plan.save_every == 0 if plan.save_every else result is not None
        if due or new_best or done == total:
            save_checkpoint(done, val_loss)
        if result and plan.forgetting_guard and (pause := forgetting_pause(result, job)):
            events.log(PAUSE_REASON, level="warning", **pause)  # saved and delivered; the user picks what next
            return finish(done, ("PAUSED", PAUSE_REASON, pause))
    return finish(total, "COMPLETED")


def save(model, tokenizer, job_dir: Path, plan: TrainingPlan, events: EventWriter) -> None:
    kind = "adapter" if plan.method in ADAPTER_METHODS else "model"
    out = job_dir / kind
    need = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad or kind == "model")
    check_space(job_dir, need)
    try:
        model.save_pretrained(out, safe_serialization=True)
        tokenizer.save_pretrained(out)  # the chat template travels with the weights
    except OSError as exc:
        raise_if_disk_full(job_dir, need, exc)
        raise
    events.emit("artifact", kind=kind, path=kind)


def plain_failure(exc: BaseException, job_dir: Path) -> UserError | None:
    """A failure the user can fix, said as such: out of memory names the setting to change."""
    if not is_out_of_memory(exc):
        return None
    try:
        plan = JobFolder(job_dir).plan()
    except UserError:
        return None
    return out_of_memory(plan, pick_device(plan.device).type)


def main(argv: list[str]) -> int:
    job_dir = Path(argv[0]).resolve()
    ranks = Ranks()
    events = EventWriter(job_dir) if ranks.main else Silent()
    try:
        final = train(job_dir, events, ranks)
    except Exception as exc:  # noqa: BLE001 — the job must say why it failed, whatever it was
        error = exc if isinstance(exc, UserError) else plain_failure(exc, job_dir)
        if not ranks.main:
            traceback.print_exc()  # into worker.log; the main process reports the job's state
        elif error is not None:
            events.emit("error", code=error.key, params=error.params, detail=str(exc)[:2000])
            events.state("FAILED", reason=error.key, **error.params)
        else:
            detail = "".join(traceback.format_exception(exc))
            events.emit("error", code="train.error.crash", params={"detail": str(exc)[:500]}, detail=detail)
            events.state("FAILED", reason="train.error.crash", detail=str(exc)[:500])
        return 1
    finally:
        ranks.close()
    state, reason, params = final if isinstance(final, tuple) else (final, None, {})
    events.state(state, reason, **params)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
