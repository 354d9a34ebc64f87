"""The training worker: `python -m easytune.train <job_dir>` (or several of it under `accelerate launch`).

The only module that imports the training stack at load. It reads `plan.yaml` (the TrainingPlan)
and `job.json` (the paths the orchestrator resolved) from the job folder, trains, writes events
(easytune.jobs.events), checkpoints (easytune.train.checkpoints) and leaves the adapter (or full
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
from dataclasses import dataclass
from pathlib import Path

import torch

from easytune.datasets import file_sha256
from easytune.health import thresholds
from easytune.i18n import UserError
from easytune.jobs.events import STOP_FILE, EventWriter
from easytune.jobs.folder import JobFolder
from easytune.jobs.guard import PAUSE_REASON, forgetting_pause
from easytune.jobs.objective import resolve_objective
from easytune.jobs.question_variants import stand_in_rows, users_rows
from easytune.jobs.resolve import LR_FLOOR, SEQUENCES_PER_ROW
from easytune.models.calibrate import auto_precision
from easytune.models.sources import load_safe, load_tokenizer
from easytune.plan.schema import TrainingPlan
from easytune.train import rehearsal
from easytune.train.adapter_precision import applies, bf16_products
from easytune.train.attention import use_segment_attention
from easytune.train.checkpoints import Checkpoints, check_space, load_weights, raise_if_disk_full
from easytune.train.core_share import CoreShare
from easytune.train.evaluate import ForgettingScore, retention_lines
from easytune.train.failures import is_out_of_memory, out_of_memory
from easytune.train.machines import settle
from easytune.train.packing import packing_is_exact, padding_share
from easytune.train.ranks import Ranks
from easytune.train.recipes import Batching, recipe_for
from easytune.train.sft import DEFAULT_CHAT_TEMPLATE, IGNORE, encode_row, encode_text
from easytune.train.tokens import load_examples

ADAPTER_METHODS = ("lora", "qlora")  # what trains an adapter and delivers `adapter/`
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def recorded_device(job: dict, plan: TrainingPlan) -> torch.device:
    """The device the app resolved for the job; one that is not on this machine now is said, not replaced."""
    wanted = job.get("device") or plan.device  # (a job from before the record named its device)
    if wanted != "auto" and not device_available(wanted):
        raise UserError("train.error.device_missing", device=wanted)
    return pick_device(wanted)


def device_available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    if kind == "xpu":
        return hasattr(torch, "xpu") and torch.xpu.is_available()
    return True


def recorded_dtype(job: dict, plan: TrainingPlan, device: torch.device) -> torch.dtype:
    if job.get("precision"):
        return DTYPES[job["precision"]]
    # a job from before the record named its precision
    return pick_dtype(plan.precision, device, cpu_bf16=bool(job.get("cpu_bf16")) and plan.method in ADAPTER_METHODS)


def check_files(job: dict) -> None:
    """The job's data files are those it was created with: a file changed since then would train on rows the
    plan, its split and its evaluation never saw."""
    for name, digest in (job.get("file_sha256") or {}).items():
        path = job.get(name)
        try:
            same = file_sha256(path) == digest
        except OSError:
            raise UserError("train.error.data_missing", path=path) from None
        if not same:
            raise UserError("train.error.data_changed", path=path)


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
    return DTYPES[precision]


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


def lr_at(step: int, plan: TrainingPlan, total: int, floor: float = LR_FLOOR) -> float:
    """Linear warmup, then cosine / linear decay to `floor` × the peak (or constant)."""
    warmup = int(plan.warmup_ratio * total)
    if step < warmup:
        return plan.learning_rate * (step + 1) / warmup
    if plan.scheduler == "constant":
        return plan.learning_rate
    progress = (step - warmup) / max(1, total - warmup)
    decay = 0.5 * (1 + math.cos(math.pi * progress)) if plan.scheduler == "cosine" else 1 - progress
    return plan.learning_rate * (floor + (1 - floor) * decay)


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
    """The events of a process that is not the first on its machine: it trains, the first one reports."""

    def emit(self, *args, **kwargs) -> None:
        pass

    state = log = emit


def adapter_shape(plan: TrainingPlan, job: dict) -> tuple[int, float]:
    """(rank, lora_alpha) of the adapter this run trains: the plan's; for a new version, the previous version's
    own (it trains on from it), or with `continual` the previous one's frozen rows plus the plan's rank."""
    start = job.get("start_adapter")
    if not start:
        return plan.lora_r, plan.lora_alpha
    from easytune.train.continual import earlier_shape, stacked_shape

    rank, alpha = earlier_shape(start)
    return stacked_shape(rank, plan.lora_r, plan.lora_alpha) if plan.continual else (rank, alpha)


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


def tune_allocator(job: dict, plan: TrainingPlan, objective: str, dtype: torch.dtype, processes: int) -> bool:
    """On a CPU, reuse freed tensor memory (faster) where the job's estimated peak leaves room for the heap's
    fragments; otherwise give it back at once, as the fit estimate assumes (hardware.tune_cpu_allocator).
    True: reused."""
    import psutil

    from easytune.models.hardware import MALLOC_EXACT, MALLOC_REUSE, cpu_allocator_threshold, tune_cpu_allocator

    if "estimated_peak_bytes" in job:
        peak = job["estimated_peak_bytes"]
    else:  # a job from before the record held its estimate
        from easytune.jobs.resolve import estimated_peak

        peak = estimated_peak(plan, Path(job["model_path"]), "cpu", str(dtype).replace("torch.", ""),
                              SEQUENCES_PER_ROW.get(objective, 1))
    threshold = (cpu_allocator_threshold(peak * processes, psutil.virtual_memory().available)
                 if peak else MALLOC_EXACT)
    tune_cpu_allocator(threshold)
    return threshold == MALLOC_REUSE


def train(job_dir: Path, events: EventWriter, ranks: Ranks) -> str | tuple[str, str, dict]:
    """Train the job; returns its final state, or (state, reason key, params) when it ends for a reason."""
    stop = StopRequest(job_dir)
    run = start(job_dir, events, ranks)
    tokenizer = load_tokenizer(run.job["model_path"])
    if not tokenizer.chat_template:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
        events.log("train.log.default_template", level="warning")
    train_set, val = load_data(run, tokenizer)
    model = load_model(run)
    train_set = with_retention(run, model, tokenizer, train_set)
    events.log("train.log.data", train=len(train_set), val=len(val))
    return Loop(run, model, tokenizer, train_set, val).train(stop)


@dataclass
class Run:
    """What the job runs with: its plan, the record the app resolved, and what this process made of it."""
    folder: JobFolder
    plan: TrainingPlan
    job: dict
    device: torch.device
    dtype: torch.dtype
    objective: str
    recipe: object
    events: EventWriter
    ranks: Ranks

    @property
    def adapter(self) -> bool:
        return self.plan.method in ADAPTER_METHODS

    @property
    def sharded(self) -> bool:
        """The full fine-tune is split over the processes (FSDP): train/sharding.py."""
        return self.plan.fsdp and self.ranks.world > 1


def start(job_dir: Path, events: EventWriter, ranks: Ranks) -> Run:
    """Read the job, check its record against this machine and its files, and set the process up."""
    folder = JobFolder(job_dir)
    plan, job = folder.plan(), folder.resolved()
    events.state("PREPARING")
    random.seed(plan.seed)
    torch.manual_seed(plan.seed)
    device = recorded_device(job, plan)
    if ranks.world > 1 and device.type not in ("cpu", "cuda"):  # DDP's backends: gloo (CPU) and NCCL
        raise UserError("train.error.processes_device", device=device.type)
    if device.type == "cuda" and ranks.local_world > torch.cuda.device_count():
        raise UserError("train.error.too_many_processes", processes=ranks.local_world,
                        gpus=torch.cuda.device_count())
    check_files(job)
    if plan.num_machines > 1:  # each machine made its job from its own copies: they must agree before they join
        settle(plan, job, ranks)
        events.log("train.log.machines", machine=plan.machine_rank, machines=plan.num_machines,
                   processes=ranks.world, split=job["split_sha256"][:12])
    device = ranks.start(device)
    dtype = recorded_dtype(job, plan, device)
    # decided when the job was created (jobs.create); resolved here only for a job from before that
    objective = job.get("objective") or resolve_objective(plan.objective, dataset_kind(job), job.get("dataset", ""))
    if device.type == "cpu":
        events.log("train.log.memory_reused" if tune_allocator(job, plan, objective, dtype, ranks.local_world)
                   else "train.log.memory_exact")
        if ranks.local_world > 1:  # the cores are shared out between this machine's processes
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // ranks.local_world))
    events.log("train.log.device", device=str(device), dtype=str(dtype).replace("torch.", ""))
    if ranks.world > 1:
        events.log("train.log.processes", processes=ranks.world, backend=ranks.backend)
    return Run(folder, plan, job, device, dtype, objective, recipe_for(objective), events, ranks)


def load_data(run: Run, tokenizer) -> tuple[list[dict], list[dict]]:
    """Token ids + labels (the loss only on what is to be learned), cached between runs. The job's files are
    already split (easytune.datasets.job_split)."""
    run.events.log(f"train.log.objective_{run.objective}")
    started = time.perf_counter()
    examples, val, cached = load_examples(tokenizer, run.job, run.plan.max_seq_len, run.objective)
    run.events.log("train.log.tokens_cached" if cached else "train.log.tokenized", examples=len(examples),
                   seconds=round(time.perf_counter() - started, 1))
    if not examples:
        raise UserError(run.recipe.no_rows, path=run.job["train_file"])
    return examples, val or []


def load_model(run: Run):
    if run.plan.method == "qlora":
        return load_four_bit(run.job["model_path"], run.dtype, run.device, run.events)
    model = load_safe(run.job["model_path"], dtype=run.dtype)
    return model.to(run.device)


def with_retention(run: Run, model, tokenizer, train_set: list[dict]) -> list[dict]:
    """The training rows with general text mixed in at the plan's share: what the model already knows, kept
    by training on it alongside (its own answers to general questions for supervised data, raw text for text)."""
    plan, job = run.plan, run.job
    if plan.retention_ratio <= 0:
        return train_set
    if not run.recipe.retention:
        run.events.log("train.log.retention_not_for_dpo", level="warning")
        return train_set
    started = time.perf_counter()
    # in proportion to the rows as the user wrote them: copies of a question (jobs/question_variants.py) teach
    # the same fact again, and general text for each of them would only lengthen the run; the extra copies of an
    # answer asked one way count as the second question they stand in for
    rows = len(users_rows(train_set, job)) + stand_in_rows(job)
    wanted = round(rows * plan.retention_ratio / (1 - plan.retention_ratio))
    own = run.objective == "sft" and any(rehearsal.requests())
    if own:  # its own answers to general questions and everyday requests, in the data's language
        answers = [[token for token in e["labels"] if token != IGNORE] for e in train_set[:200]]
        language = rehearsal.language_of([tokenizer.decode(ids[:200]) for ids in answers])
        rows = rehearsal.rehearsal_rows(model, tokenizer, model_path=job["model_path"], language=language,
                                        cache_dir=job.get("cache_dir"), count=wanted, seed=plan.seed)
        general = [e for row in rows for e in encode_row(tokenizer, row, plan.max_seq_len)]
    else:
        general = [e for line in retention_lines(thresholds()["forgetting"]["reference_lines"])
                   for e in encode_text(tokenizer, {"text": line}, plan.max_seq_len)]
    random.Random(plan.seed).shuffle(general)
    run.events.log("train.log.retention_rehearsal" if own else "train.log.retention", general=wanted,
                   pct=round(plan.retention_ratio * 100), seconds=round(time.perf_counter() - started, 1))
    return train_set + (general * (wanted // max(1, len(general)) + 1))[:wanted]


def adapted(run: Run, model):
    """The model as it trains: packed sequences attending to themselves, activations recomputed where the plan
    says, the LoRA adapter (trained on from the previous version's). Returns (model, packing is exact)."""
    plan, job, events = run.plan, run.job, run.events
    if plan.packing:  # each packed sequence attends to itself alone: no compute on cross-sequence blocks
        use_segment_attention(model)
    if plan.grad_checkpointing:  # activations recomputed in the backward pass instead of kept
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        events.log("train.log.grad_checkpointing")
    if run.adapter:
        from peft import LoraConfig, get_peft_model

        from easytune.train.modules import blocks_of, lora_targets

        rank, alpha = adapter_shape(plan, job)
        targets = lora_targets(model, plan.target_modules, plan.lora_layers)
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=plan.lora_dropout, target_modules=targets,
                            task_type="CAUSAL_LM")
        if plan.lora_layers < 1:  # nothing below them trains: the backward pass stops at the first adapted block
            blocks = blocks_of(targets)  # the top ones: the last is the model's last
            events.log("train.log.lora_layers", first=min(blocks) + 1, count=max(blocks) + 1)
        model = get_peft_model(model, config)
        if job.get("start_adapter") and not plan.continual:  # a new version trains on from the last one's
            continue_adapter(model, job["start_adapter"])
            events.log("train.log.continued", path=job["start_adapter"], version=job.get("version", 2))
        if run.device.type == "cpu":  # a mask from random bytes: the default one is a fifth of a CPU step
            from easytune.train.dropout import use_byte_dropout

            use_byte_dropout(model)
    if plan.embedding_noise > 0 and run.objective == "sft":  # (measured for answers to learn, not preferences)
        from easytune.train.embedding_noise import add_embedding_noise

        add_embedding_noise(model, plan.embedding_noise)
        events.log("train.log.embedding_noise", alpha=f"{plan.embedding_noise:g}")
    return model


def shared_cores(run: Run) -> CoreShare | None:
    """On a CPU whose cores this process has to itself (one process), threads that give way to other programs."""
    threads = torch.get_num_threads()
    if run.device.type != "cpu" or run.ranks.local_world > 1 or threads < 2:
        return None
    return CoreShare(threads, torch.set_num_threads)


class Loop:
    """The training loop over the recipe's losses, with its evaluations, checkpoints and delivery."""

    def __init__(self, run: Run, model, tokenizer, train_set: list[dict], val: list[dict]):
        plan, job, ranks = run.plan, run.job, run.ranks
        self.run, self.plan, self.events, self.ranks = run, plan, run.events, ranks
        self.tokenizer, self.train_set, self.val = tokenizer, train_set, val
        self.base, self.attention = model, model.config._attn_implementation  # the adapter, if any, wraps `base`
        self.model = adapted(run, model)
        if run.sharded:  # before the optimizer: it keeps each process's share of the weights
            from easytune.train.sharding import shard

            self.events.log("train.log.fsdp", processes=ranks.world,
                            share=round(100 * shard(self.model) / sum(p.numel() for p in self.model.parameters())))
        eval_ranks = None if run.sharded else ranks  # split models score every row on every process (sharding.py)
        self.stack = None  # a continual version's frozen earlier rows (train/continual.py)
        if run.adapter and plan.continual and job.get("start_adapter"):
            from easytune.train.continual import Stack

            self.stack = Stack(self.model, job["start_adapter"], plan.orthogonal_weight)
            self.events.log("train.log.continual", version=job.get("version", 2), earlier=self.stack.rank,
                            rank=plan.lora_r, weight=plan.orthogonal_weight)
        self.pack = plan.packing and packing_is_exact(self.model, run.device)
        if plan.packing and not self.pack:
            self.base.set_attn_implementation(self.attention)
            self.events.log("train.log.packing_unsupported", level="warning")
        elif self.pack:
            self.events.log("train.log.packing", pct=round(100 * padding_share(train_set, plan.batch_size)))
        self.model.train()
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.events.log("train.log.params", trainable=sum(p.numel() for p in self.params),
                        total=sum(p.numel() for p in self.model.parameters()))
        self.optimizer = torch.optim.AdamW(self.params, lr=plan.learning_rate, weight_decay=plan.weight_decay)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.batching = Batching(pad_id=pad_id, device=run.device, pack=self.pack, batch_size=plan.batch_size,
                                 max_len=plan.max_seq_len, beta=plan.dpo_beta, adapter=run.adapter, ranks=eval_ranks)
        self.forgetting = ForgettingScore(
            self.model, tokenizer, model_path=job["model_path"], max_len=min(plan.max_seq_len, 256),
            per_language=thresholds()["forgetting"]["reference_lines"], batch_size=plan.batch_size, pad_id=pad_id,
            device=run.device, cache_dir=None if run.sharded else job.get("cache_dir"), adapter=run.adapter,
            pack=self.pack, ranks=eval_ranks)  # (a cache read by one process and not another would part them)
        self.recipe = run.recipe
        self.recipe.prepare(self.model, [train_set, val], self.batching, self.events)
        self.training_s = 0.0  # the steps' own time, evaluations left out
        self.micro_per_epoch = math.ceil(len(train_set) / plan.batch_size)
        self.steps_per_epoch = math.ceil(len(train_set) / (plan.batch_size * plan.grad_accum * ranks.world))
        self.total = plan.max_steps or max(1, math.ceil(plan.epochs * self.steps_per_epoch))
        self.floor = job.get("lr_floor", LR_FLOOR)
        self.checkpoints = Checkpoints(run.folder.checkpoints, plan.keep_checkpoints)
        self.start_step, self.consumed = 0, 0  # optimizer steps done; micro-batches taken (all processes)
        self.core_share = shared_cores(run)

    def train(self, stop: StopRequest) -> str | tuple[str, str, dict]:
        """Step after step: an evaluation and a checkpoint when due, the forgetting guard after each evaluation;
        until the plan's steps are done or a stop is asked. Returns the final state, as train() does."""
        plan, total = self.plan, self.total
        if self.run.job.get("resume_from"):
            self.resume(self.run.job["resume_from"])
            total = self.total
        self.train_model = self.model
        if self.ranks.world > 1 and not self.run.sharded:
            from torch.nn.parallel import DistributedDataParallel

            device = self.run.device
            self.train_model = DistributedDataParallel(self.model, device_ids=[device.index]
                                                       if device.type == "cuda" else None)
        self.events.state("RUNNING")
        if self.start_step:
            self.events.log("train.log.resumed", step=self.start_step, total=total)
        else:
            self.evaluate(0)
        # Every process keeps the same account of what is saved, so all take the same branches below.
        self.saved_step, best_val_loss = (self.start_step or None), self.checkpoints.index["best_val_loss"]
        eval_every = plan.eval_every or max(1, total // 10)
        stream = self.micro_batches(self.consumed)
        for step in range(self.start_step, total):
            if self.ranks.any(stop):
                return self.finish(step, "STOPPED")
            self.optimizer_step(step, stream)
            if self.core_share and (threads := self.core_share.after_step()):
                self.events.log("train.log.cores_shared" if threads < self.core_share.cores else "train.log.cores_all",
                                threads=threads, cores=self.core_share.cores)
            done = step + 1
            result = self.evaluate(done, last=done == total) if done % eval_every == 0 or done == total else None
            val_loss = result.get("val_loss") if result else None
            new_best = val_loss is not None and (best_val_loss is None or val_loss < best_val_loss)
            best_val_loss = val_loss if new_best else best_val_loss
            due = done % plan.save_every == 0 if plan.save_every else result is not None
            if due or new_best or done == total:
                self.save_checkpoint(done, val_loss)
            if result and plan.forgetting_guard and (pause := forgetting_pause(result, self.run.job)):
                self.events.log(PAUSE_REASON, level="warning", **pause)  # saved and delivered; the user picks next
                return self.finish(done, ("PAUSED", PAUSE_REASON, pause))
        return self.finish(total, "COMPLETED")

    def optimizer_step(self, step: int, stream) -> None:
        """One optimizer step over grad_accum micro-batches, reported as a step event."""
        plan, ranks = self.plan, self.ranks
        started = time.perf_counter()
        lr = lr_at(step, plan, self.total, self.floor)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss_sum, tokens, figures = 0.0, 0, {}
        for micro in range(plan.grad_accum):
            with self.accumulating(last=micro == plan.grad_accum - 1):
                loss, n, stats = self.recipe.loss(self.train_model, next(stream), self.batching)
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
        self.consumed += plan.grad_accum * ranks.world
        if self.stack is not None:  # once a step: the penalty is on the weights, not on a batch
            penalty = self.stack.penalty()
            penalty.backward()
            figures["orthogonality"] = penalty.item()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.stack is not None:
            self.stack.restore()
        if ranks.world > 1:  # the step's figures over all processes: mean loss, total tokens
            loss_sum, tokens, *values = ranks.sum(loss_sum, tokens, *figures.values())
            loss_sum, figures = loss_sum / ranks.world, {k: v / ranks.world for k, v in zip(figures, values)}
        elapsed = time.perf_counter() - started
        self.training_s += elapsed
        self.events.emit("step", step=step + 1, total_steps=self.total,
                         epoch=round((step + 1) / self.steps_per_epoch, 3), loss=round(loss_sum, 5), lr=lr,
                         tokens=int(tokens), tokens_per_s=round(tokens / elapsed, 1),
                         **{k: round(v, 5) for k, v in figures.items()})

    def accumulating(self, last: bool):
        """Gradients are averaged across processes once a step, at its last micro-batch; the adapter's products
        run in bf16 where the model does on a CPU (train/adapter_precision.py)."""
        stack = contextlib.ExitStack()
        if applies(self.run.device, self.run.dtype, self.run.adapter):
            stack.enter_context(bf16_products(self.model))
        if self.run.sharded:
            self.model.set_requires_gradient_sync(last)
        elif not last and self.ranks.world > 1:
            stack.enter_context(self.train_model.no_sync())
        return stack

    def evaluate(self, step: int, last: bool = False) -> dict:
        """The recipe's held-out figures; the forgetting score before training, at the first evaluation and the
        last, and in between as often as its time budget allows (a share of the training time)."""
        due = self.forgetting.due(self.training_s, thresholds()["forgetting"]["max_time_share"])
        scored = self.ranks.any(step == 0 or last or due)  # every process scores, or none
        result = {"step": step, **(self.forgetting.score(untrained=step == 0) if scored else {})}
        if self.val:
            started = time.perf_counter()
            result.update(self.recipe.evaluate(self.model, self.val, self.batching))
            result["val_s"] = round(time.perf_counter() - started, 3)
        self.events.emit("eval", **result)
        return result

    def micro_batches(self, start: int):
        """The endless shuffled stream from micro-batch `start` on; with several processes each takes
        every world-th micro-batch, so together they read the data once per epoch."""
        shuffled_epoch, order, size = -1, [], self.plan.batch_size
        for index in range(start + self.ranks.rank, 2**62, self.ranks.world):
            epoch, k = divmod(index, self.micro_per_epoch)
            if epoch != shuffled_epoch:
                order = list(self.train_set)
                random.Random(self.plan.seed + epoch).shuffle(order)
                shuffled_epoch = epoch
            yield order[k * size:(k + 1) * size]

    def resume(self, checkpoint: str) -> None:
        if self.run.sharded:
            from easytune.train.sharding import scatter_optimizer

            state = self.checkpoints.state(checkpoint)
            optimizer = state.pop("optimizer")
            self.scatter(checkpoint)
            scatter_optimizer(self.model, self.optimizer, optimizer if self.ranks.main else {})
        else:
            state = self.checkpoints.load(checkpoint, self.model, self.optimizer)
        if self.ranks.main:
            self.checkpoints.forget_after(state["step"])  # they belong to the run being replaced
        self.start_step, self.consumed, self.total = state["step"], state["micro_batches"], state["total_steps"]
        random.setstate(state["rng"]["python"])
        torch.set_rng_state(state["rng"]["torch"])
        if self.run.device.type == "cuda" and "cuda" in state["rng"]:
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.run.device)

    def scatter(self, checkpoint: str) -> None:
        """A split model's weights from a checkpoint the main process reads."""
        from safetensors.torch import load_file

        from easytune.train.checkpoints import WEIGHTS
        from easytune.train.sharding import scatter_weights

        folder = self.checkpoints.found(checkpoint) if self.ranks.main else None
        scatter_weights(self.model, load_file(str(folder / WEIGHTS)) if folder else {})

    def save_checkpoint(self, step: int, val_loss: float | None) -> None:
        self.saved_step = step
        gathered = None
        if self.run.sharded:  # every process takes part in gathering; the main one writes
            from easytune.train.sharding import gathered_optimizer, gathered_weights

            gathered = gathered_weights(self.model), gathered_optimizer(self.model, self.optimizer)
        if self.ranks.main:
            rng = {"python": random.getstate(), "torch": torch.get_rng_state()}
            if self.run.device.type == "cuda":
                rng["cuda"] = torch.cuda.get_rng_state(self.run.device)
            state = {"step": step, "micro_batches": self.consumed, "total_steps": self.total,
                     "seed": self.plan.seed, "rng": rng,
                     "scheduler": {"kind": self.plan.scheduler, "step": step, "total_steps": self.total}}
            self.events.emit("checkpoint", **self.checkpoints.save(step, self.model, self.optimizer, state, val_loss,
                                                                   gathered))

    def finish(self, steps_done: int, final):
        """Checkpoint the end point, then deliver the best weights (or the last) as the job's result."""
        if self.saved_step != steps_done:
            self.save_checkpoint(steps_done, None)
        if self.ranks.main or self.run.sharded:  # (a split model is gathered by all its processes)
            self.deliver(steps_done)
        if not self.ranks.main and self.ranks.reports:  # another machine's job: the main machine keeps the result
            self.events.log("train.log.result_on_main", ip=self.plan.main_process_ip, step=steps_done)
        return final

    def deliver(self, steps_done: int) -> None:
        best, events = self.checkpoints.best_step, self.events
        if not (self.plan.keep_best and self.val and best is not None and best != steps_done):
            best = None
        gathered = None
        if self.run.sharded:  # the main process knows the checkpoints; the others follow its choice
            from easytune.train.sharding import gathered_weights

            best = int(self.ranks.sum(float(best or 0) if self.ranks.main else 0.0)[0]) or None
            if best is not None:
                self.scatter(f"step-{best}")
            gathered = gathered_weights(self.model)
            if not self.ranks.main:
                return
        elif best is not None:
            load_weights(self.model, self.checkpoints.folder / f"step-{best}")
        if best is not None:
            events.log("train.log.delivered_best", step=best, last=steps_done,
                       val_loss=round(self.checkpoints.index["best_val_loss"], 4))
        elif not self.val:
            events.log("train.log.delivered_last_no_val", step=steps_done)
        elif self.plan.keep_best:
            events.log("train.log.delivered_last_best", step=steps_done)
        else:
            events.log("train.log.delivered_last", step=steps_done)
        self.base.set_attn_implementation(self.attention)  # the saved model loads with its usual attention
        save(self.model, self.tokenizer, self.run.folder.path, self.plan, events, gathered)


def save(model, tokenizer, job_dir: Path, plan: TrainingPlan, events: EventWriter,
         gathered: dict | None = None) -> None:
    """The job's result: the adapter, or the whole model. gathered: a split model's weights, gathered whole."""
    kind = "adapter" if plan.method in ADAPTER_METHODS else "model"
    out = job_dir / kind
    need = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad or kind == "model")
    check_space(job_dir, need)
    try:
        if gathered is not None:
            from easytune.train.sharding import save_whole

            save_whole(model, gathered, out)
        else:
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
    events = EventWriter(job_dir) if ranks.reports else Silent()
    try:
        final = train(job_dir, events, ranks)
    except Exception as exc:  # noqa: BLE001 — the job must say why it failed, whatever it was
        error = exc if isinstance(exc, UserError) else plain_failure(exc, job_dir)
        if not ranks.reports:
            traceback.print_exc()  # into worker.log; the machine's first process reports the job's state
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
