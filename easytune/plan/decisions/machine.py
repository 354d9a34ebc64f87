"""Where and how the run computes: the device (as the machine was read), the processes, the number format."""

from __future__ import annotations

from easytune.models.hardware import Hardware
from easytune.plan.draft import Draft, gb
from easytune.plan.inputs import PlanContext
from easytune.plan.schema import THIS_MACHINE, default

DEVICE_NAMES = {"cpu": "CPU", "cuda": "GPU", "mps": "Apple MPS", "xpu": "Intel XPU"}


def decide_machine(ctx: PlanContext, draft: Draft) -> int:
    """The device, the processes and the machines; returns how many processes share each batch (on every
    machine of the run: a run over several machines is the user's choice, never the planner's)."""
    hw = ctx.hw
    if hw is None:
        draft.set("device", "auto", "planner.reason.device_unknown")
        draft.warn("planner.warn.no_hardware")
    else:
        key, params = device_reason(hw.accelerator, hw)
        draft.set("device", "auto", key, **params)
    if ctx.gpus > 1:  # data-parallel: each GPU trains on its own share of every batch
        draft.set("num_processes", ctx.gpus, "planner.reason.processes_gpus", gpus=ctx.gpus)
    else:
        draft.set("num_processes", 1, "planner.reason.processes_one")
    machines = draft.set("num_machines", 1, "planner.reason.machines_one")  # (a user's number wins)
    for name in THIS_MACHINE:  # where a machine stands is the user's to say: the planner keeps the defaults
        draft.set(name, default(name), "planner.reason.machine_setting" if machines > 1
                  else "planner.reason.machine_unused", value=default(name))
    return machines * draft.values["num_processes"]


def device_reason(device: str, hw: Hardware) -> tuple[str, dict]:
    if device in ("cuda", "xpu"):
        gpu = max(hw.cuda if device == "cuda" else hw.xpu, key=lambda g: g.total_memory)
        return "planner.reason.device_gpu", {"name": gpu.name, "gb": gb(gpu.total_memory)}
    if device == "mps":
        return "planner.reason.device_mps", {"gb": gb(hw.training_memory("mps"))}
    return "planner.reason.device_cpu", {"cores": hw.cpu_physical or hw.cpu_logical,
                                         "gb": gb(hw.ram_available)}


def decide_precision(ctx: PlanContext, draft: Draft) -> None:
    """After the method: a full fine-tune keeps fp32 weights, because the worker updates the weights
    in their own format and bf16 rounds away updates smaller than about 1/256 of a weight."""
    if draft.values["method"] == "full" and ctx.bf16:
        draft.set("precision", "fp32", "planner.reason.precision_full")
    elif ctx.bf16 and ctx.device == "cpu":
        rates = ctx.cpu_rates()
        draft.set("precision", "auto", "planner.reason.precision_cpu_bf16", bf16=f"{rates['bf16'] / 1e9:.0f}",
                  fp32=f"{rates['fp32'] / 1e9:.0f}")
    elif ctx.bf16:
        draft.set("precision", "auto", "planner.reason.precision_bf16")
    elif ctx.device == "cpu" and ctx.cpu_rates():
        rates = ctx.cpu_rates()
        draft.set("precision", "auto", "planner.reason.precision_cpu_fp32", bf16=f"{rates['bf16'] / 1e9:.0f}",
                  fp32=f"{rates['fp32'] / 1e9:.0f}")
    elif ctx.device is None:
        draft.set("precision", "auto", "planner.reason.precision_unknown")
    else:
        draft.set("precision", "auto", "planner.reason.precision_fp32", device=DEVICE_NAMES[ctx.device])
