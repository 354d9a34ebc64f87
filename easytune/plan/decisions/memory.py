"""What fits in memory: the training method (full, LoRA, QLoRA), a full fine-tune split over the processes
(FSDP), the micro-batch, gradient checkpointing, and shorter rows when even one row does not fit. Every size
comes from the memory estimator."""

from __future__ import annotations

import math

from easytune.models.estimate import FITS_BELOW, estimate_memory
from easytune.plan.decisions.data import Split
from easytune.plan.decisions.length import StepTokens
from easytune.plan.draft import Draft, gb, params_text, pct, share_over
from easytune.plan.inputs import PlanContext


def training_dtype(ctx: PlanContext, values: dict) -> str:
    """The number format weights train in: the plan's precision once decided, before that the user's."""
    return ctx.dtype(values.get("precision", ctx.overrides.get("precision", "auto")))


def estimate(ctx: PlanContext, values: dict, *, method: str, batch: int = 1, seq_len: int | None = None,
             grad_accum: int = 1, dtype: str | None = None, grad_checkpointing: bool | None = None,
             shards: int | None = None):
    """Peak memory for `batch` rows (a preference row is two sequences: chosen and rejected) on each device;
    shards: the processes a full fine-tune is split over, by default as the plan decided (FSDP)."""
    if ctx.model.shape is None:
        return None
    batch *= ctx.task_rules.sequences_per_row
    target = values.get("target_modules", ctx.level_rules.target_modules)
    dtype = dtype or (ctx.four_bit_dtype if method == "qlora" else training_dtype(ctx, values))
    return estimate_memory(ctx.model.shape, method=method, seq_len=seq_len or values["max_seq_len"],
                           batch=batch, dtype=dtype,
                           grad_checkpointing=(values.get("grad_checkpointing", False)
                                               if grad_checkpointing is None else grad_checkpointing),
                           lora_r=values.get("lora_r", ctx.level_rules.rank("upper")), target=target,
                           device=ctx.device or "cpu", grad_accum=grad_accum,
                           lora_dropout=values.get("lora_dropout", 0.05),
                           shards=processes(values) if shards is None and values.get("fsdp") else shards or 1)


def processes(values: dict) -> int:
    """The run's processes over all its machines."""
    return values.get("num_processes", 1) * values.get("num_machines", 1)


def decide_method(ctx: PlanContext, draft: Draft) -> None:
    rules = ctx.rules.method.full
    m, d = ctx.model, ctx.data
    small = bool(m.params and m.params <= rules.max_params)
    eligible = (small and ctx.level in rules.levels and ctx.task_rules.full_allowed
                and d.known and d.rows >= rules.min_rows)
    if eligible and ctx.memory:
        full = estimate(ctx, draft.values, method="full", dtype="fp32" if "precision" not in ctx.overrides else None)
        if full is not None and full.total <= rules.max_memory_share * ctx.memory:
            draft.set("method", "full", "planner.reason.method_full", params=params_text(m.params),
                      need_gb=gb(full.total), have_gb=gb(ctx.memory))
            return
        if full is not None:
            draft.set("method", "lora", "planner.reason.method_lora_memory", need_gb=gb(full.total),
                      have_gb=gb(ctx.memory))
            return
    if lora_too_big(ctx, draft):
        return
    if m.params and not small:
        draft.set("method", "lora", "planner.reason.method_lora_large", params=params_text(m.params))
    else:
        draft.set("method", "lora", "planner.reason.method_lora")


def decide_sharding(ctx: PlanContext, draft: Draft, world: int) -> None:
    """FSDP only where it is needed: a full fine-tune over several processes that does not fit on one device
    whole. Splitting costs every layer a gather and a scatter per step; a model that fits trains faster whole."""
    if draft.values["method"] != "full":
        draft.set("fsdp", False, "planner.reason.fsdp_not_full")
        return
    if world == 1:
        draft.set("fsdp", False, "planner.reason.fsdp_one_process")
        return
    whole = estimate(ctx, draft.values, method="full", shards=1)
    if whole is None or not ctx.memory:
        draft.set("fsdp", False, "planner.reason.fsdp_unknown", processes=world)
    elif whole.total <= FITS_BELOW * ctx.memory:
        draft.set("fsdp", False, "planner.reason.fsdp_off", processes=world, need_gb=gb(whole.total),
                  have_gb=gb(ctx.memory))
    else:
        split = estimate(ctx, draft.values, method="full", shards=world)
        draft.set("fsdp", True, "planner.reason.fsdp_on", processes=world, need_gb=gb(whole.total),
                  shard_gb=gb(split.total), have_gb=gb(ctx.memory))


def lora_too_big(ctx: PlanContext, draft: Draft) -> bool:
    """On a GPU where LoRA cannot fit even one row (with gradient checkpointing), QLoRA keeps the
    frozen weights in 4 bits: about a quarter of their memory. True when that was decided."""
    if ctx.device != "cuda" or not ctx.memory or ctx.model.shape is None:
        return False
    lora = estimate(ctx, draft.values, method="lora", grad_checkpointing=True)
    if lora.total <= FITS_BELOW * ctx.memory:
        return False
    qlora = estimate(ctx, draft.values, method="qlora", grad_checkpointing=True)
    params = {"need_gb": gb(lora.total), "qlora_gb": gb(qlora.total), "have_gb": gb(ctx.memory)}
    if not ctx.hw.four_bit:
        draft.warn("planner.warn.qlora_missing", **params)
        return False
    draft.set("method", "qlora", "planner.reason.method_qlora", **params)
    return True


def decide_batch(ctx: PlanContext, draft: Draft, split: Split, load: StepTokens, world: int) -> StepTokens:
    """The micro-batch and accumulation; returns the step's tokens, fewer where rows had to be shortened."""
    effective = split.size_row.effective_batch if split.size_row else 16
    if split.train_rows:
        effective = max(1, min(effective, split.train_rows))
    device = ctx.device or "cpu"
    top = min(effective, ctx.rules.memory.micro_batch_cap[device])
    method = draft.values["method"]
    seq = draft.values["max_seq_len"]
    min_seq = ctx.rules.memory.min_seq_len
    known = ctx.memory is not None and ctx.model.shape is not None

    def fits(batch: int, seq_len: int, ckpt: bool | None = None) -> bool:
        ckpt = ctx.overrides.get("grad_checkpointing", False) if ckpt is None else ckpt
        need = estimate(ctx, draft.values, method=method, batch=batch, seq_len=seq_len, grad_checkpointing=ckpt)
        return need.total <= FITS_BELOW * ctx.memory

    batch, ckpt_need = 1, None
    if not known:
        batch = min(top, 4)
    else:
        while batch * 2 <= top:  # the largest power of two up to the cap that fits
            batch *= 2
        while batch > 1 and not fits(batch, seq):
            batch //= 2
        if batch == 1 and not fits(1, seq):  # recomputing activations costs time, shortening rows costs data
            ckpt_need = estimate(ctx, draft.values, method=method, seq_len=seq, grad_checkpointing=False).total
    decide_checkpointing(ctx, draft, ckpt_need, seq, known)
    if known:
        ckpt = draft.values["grad_checkpointing"]
        if batch == 1 and not fits(1, seq, ckpt) and not draft.user("max_seq_len"):
            while seq > min_seq:  # even one row does not fit: shorten the rows before giving up
                seq = max(min_seq, seq // 2)
                if fits(1, seq, ckpt):
                    break
            if seq != draft.values["max_seq_len"]:
                cut = share_over(ctx.data.tokens, seq)
                draft.set("max_seq_len", seq, "planner.reason.seq_memory", length=seq,
                          pct=pct(cut) if cut is not None else "?")
                if cut is not None and cut > 0.05:
                    draft.warn("planner.warn.seq_cut", pct=pct(cut), length=seq)
                load = StepTokens(typical=min(load.typical, seq), padded=min(load.padded, seq))
    if known:
        need = estimate(ctx, draft.values, method=method, batch=batch, grad_accum=max(1, math.ceil(effective / batch)))
        key = "planner.reason.batch_memory" if batch < top else "planner.reason.batch"
        if batch == top and top < effective and device in ("cpu", "mps"):
            key = "planner.reason.batch_cpu"
        if need.total > ctx.memory:
            key = "planner.reason.batch_over"
        draft.set("batch_size", batch, key, batch=batch, need_gb=gb(need.total), have_gb=gb(ctx.memory))
    elif ctx.model.shape is None:
        draft.set("batch_size", batch, "planner.reason.batch_unknown_model", batch=batch)
    else:
        draft.set("batch_size", batch, "planner.reason.batch_unknown_memory", batch=batch)
    batch = draft.values["batch_size"]
    accum = max(1, math.ceil(effective / (batch * world)))
    if split.size_row is None:
        draft.set("grad_accum", accum, "planner.reason.accum_unknown", accum=accum,
                  effective=batch * accum * world)
    elif accum == 1:
        draft.set("grad_accum", accum, "planner.reason.accum_one", effective=batch * world,
                  rows=split.train_rows)
    else:
        draft.set("grad_accum", accum, "planner.reason.accum", accum=accum, effective=batch * accum * world,
                  rows=split.train_rows)
    return load


def decide_checkpointing(ctx: PlanContext, draft: Draft, need_without: int | None, seq: int, known: bool) -> None:
    """Gradient checkpointing only where one row's activations do not fit: it slows every step."""
    if need_without is None:
        draft.set("grad_checkpointing", False, "planner.reason.ckpt_off" if known else "planner.reason.ckpt_unknown")
        return
    with_ckpt = estimate(ctx, draft.values, method=draft.values["method"], seq_len=seq, grad_checkpointing=True).total
    draft.set("grad_checkpointing", True, "planner.reason.ckpt_memory", length=seq, need_gb=gb(need_without),
              ckpt_gb=gb(with_ckpt), have_gb=gb(ctx.memory))
