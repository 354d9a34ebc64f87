"""What the finished plan costs: steps, memory, time and disk, with the warnings they call for."""

from __future__ import annotations

import math

from easytune.models.catalog import load_catalog
from easytune.models.estimate import DTYPE_BYTES, GIB, MIB, lora_parameters, verdict
from easytune.plan.decisions.data import Split
from easytune.plan.decisions.length import StepTokens
from easytune.plan.decisions.memory import estimate, training_dtype
from easytune.plan.decisions.schedule import train_examples
from easytune.plan.draft import Draft, gb
from easytune.plan.inputs import PlanContext


def estimate_costs(ctx: PlanContext, draft: Draft, split: Split, load: StepTokens, world: int) -> None:
    v = draft.values
    est = draft.estimates
    effective = v["batch_size"] * v["grad_accum"] * world  # rows per optimiser update, all processes
    examples = train_examples(ctx, v, split)
    if split.train_rows:
        steps_per_epoch = math.ceil(examples / effective)
        steps = v["max_steps"] or max(1, math.ceil(v["epochs"] * steps_per_epoch))
        est.update(train_rows=split.train_rows, val_rows=split.val_rows, train_examples=examples,
                   steps_per_epoch=steps_per_epoch)
    else:
        steps = v["max_steps"] or None
        est.update(train_rows=None, val_rows=None, train_examples=None, steps_per_epoch=None)
    est.update(steps=steps, effective_batch=effective)

    # memory of the final settings
    need = estimate(ctx, v, method=v["method"], batch=v["batch_size"], seq_len=v["max_seq_len"],
                    grad_accum=v["grad_accum"])
    est.update(memory_bytes=need.total if need else None, memory_available=ctx.memory,
               trainable_params=need.trainable_params if need else None, memory_status=None)
    if need is not None and ctx.memory:
        result = verdict(need, ctx.memory, catalog=load_catalog(), device=ctx.device or "cpu")
        est["memory_status"] = result.status
        if result.status != "fits":
            draft.warn(f"planner.warn.memory_{result.status}", need_gb=gb(need.total),
                       have_gb=gb(ctx.memory))
            # the changes a plan can express; the batch was already the largest that fits, unless the
            # user chose it (and a preference row's two sequences would make the numbers confusing)
            allowed = {"method", "dtype", "seq_len", "model"}
            if draft.user("batch_size") and ctx.task_rules.sequences_per_row == 1:
                allowed |= {"batch", "grad_accum"}
            for s in result.suggestions:
                if set(s.change) <= allowed and s.change.get("method") in (None, "lora", "full"):
                    draft.warnings.append({"key": s.key, "params": dict(s.params), "change": dict(s.change)})

    # time: steps x (tokens per step / speed + overhead)
    # a packed batch computes its rows as they are; an unpacked one pads each to the longest beside it
    tokens_per_step = effective * (load.padded if v["batch_size"] > 1 and not v["packing"] else load.typical)
    tokens_per_step *= ctx.task_rules.sequences_per_row
    est["tokens_per_step"] = int(tokens_per_step)
    speed, source = training_speed(ctx, v, load, v["method"], v["max_seq_len"])
    speed = speed * world if speed and source != "measured" else speed  # the processes work at once
    est["time_source"] = source
    if steps and speed:
        if source == "measured":  # a whole run's speed: its step overheads and evaluations are in it
            step_s, eval_s = tokens_per_step / speed, 0.0
        else:
            overhead = ctx.rules.throughput.step_overhead_s[ctx.device or "cpu"]
            step_s = tokens_per_step / speed + overhead * v["grad_accum"]
            eval_tokens = (split.val_rows or 0) * load.typical * ctx.rules.throughput.evaluations
            eval_s = eval_tokens / (speed * (3 if v["method"] == "full" else 2))  # forward only
        seconds = steps * step_s + eval_s + startup_seconds(ctx)
        est.update(step_seconds=round(step_s, 4), minutes=round(seconds / 60, 1))
        if seconds / 3600 > ctx.rules.throughput.slow_hours:
            draft.warn("planner.warn.slow", hours=f"{seconds / 3600:.0f}")
    else:
        est.update(step_seconds=None, minutes=None)

    # disk
    rules = ctx.rules.disk
    fixed = rules.fixed_mib * MIB + (steps or 0) * 300
    if v["method"] == "full" and ctx.model.params:
        disk = ctx.model.params * DTYPE_BYTES[training_dtype(ctx, v)] + fixed
    elif ctx.model.shape is not None:
        adapted = lora_parameters(ctx.model.shape, v["lora_r"], v["target_modules"]) * v["lora_layers"]
        disk = adapted * 4 + fixed
    else:
        disk = None
    est["disk_bytes"] = int(disk) if disk else None
    free = ctx.hw.disk_free if ctx.hw is not None else None
    est["disk_free"] = free
    if disk and free is not None and free < disk * rules.headroom:
        draft.warn("planner.warn.disk", need_gb=gb(disk), free_gb=gb(free))


def startup_seconds(ctx: PlanContext) -> float:
    """Starting the worker and reading the weights from disk."""
    rules = ctx.rules.throughput
    size = (ctx.info or {}).get("size_on_disk") or (ctx.model.params or 0) * 2
    return rules.startup_s + size / (rules.load_mb_per_s * MIB)


def training_speed(ctx: PlanContext, values: dict, load: StepTokens, method: str,
                   seq_len: int) -> tuple[float | None, str]:
    """Training tokens per second: measured when given, else from FLOPs per token."""
    if ctx.tokens_per_s:
        return ctx.tokens_per_s, "measured"
    m = ctx.model
    if not m.params or ctx.device is None:
        return None, "unknown"
    rules = ctx.rules.throughput
    device = ctx.device
    hw = ctx.hw
    source = "estimated"
    if ctx.matmul_flops:  # this machine's measured rate, times the share of it training reaches
        # a bf16 step on a CPU is timed from the fp32 rate too: its products are faster, the rest of it is not,
        # and over the CPUs measured the step followed the fp32 rate, not the bf16 one (intents.yaml)
        bf16_cpu = device == "cpu" and training_dtype(ctx, values) == "bf16" and ctx.cpu_bf16_flops
        flops, source = ctx.matmul_flops * rules.calibrated_share["cpu_bf16" if bf16_cpu else device], "calibrated"
    elif device == "cuda" and hw.cuda:
        gb = max(g.total_memory for g in hw.cuda) / GIB
        if hw.bf16:
            flops = next(r.bf16 for r in rules.cuda_tflops if gb >= r.min_gb) * 1e12
        else:
            flops = rules.cuda_fp32_tflops * 1e12
    elif device == "mps":
        flops = rules.mps_tflops * 1e12
    elif device == "xpu":
        flops = rules.xpu_tflops * 1e12
    else:
        cores = hw.cpu_physical or max(1, hw.cpu_logical // 2)
        flops = rules.cpu_gflops_per_core * 1e9 * cores
    # forward 2·N; backward 2·N for the activations' gradients, 2·N more for the weights' in a full fine-tune;
    # an adapter on the upper layers alone (lora_layers) runs the backward pass through those layers only
    deep = 1.0 if method == "full" else values["lora_layers"]
    per_token = (6 if method == "full" else 2 + 2 * deep) * m.params
    if values.get("grad_checkpointing"):
        per_token += 2 * deep * m.params  # the forward pass is run again during the backward pass
    if ctx.task_rules.reference_forward:
        per_token += 2 * m.params  # the frozen reference model reads every sequence once
    if m.layers and m.hidden:
        per_token += (2 + 4 * deep) * m.layers * m.hidden * min(seq_len, load.padded)
    return flops / per_token, source
