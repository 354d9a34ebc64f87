"""This worker's place among the training processes: one, or several started by `accelerate launch`.

With several (data parallel, DDP), every process holds the whole model, takes its share of each step's
micro-batches, and gradients are averaged across processes after each backward pass. Only the main
process (rank 0) writes checkpoints and the result; the first process on each machine reports into that
machine's job (on the main machine, the main process); the others compute and follow.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Ranks:
    def __init__(self):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(self.world)))  # the processes on this machine
        self.main = self.rank == 0
        self.reports = self.local_rank == 0  # writes this machine's events
        self.backend = None
        self.device = torch.device("cpu")  # where collectives run: NCCL needs GPU tensors

    def start(self, device: torch.device) -> torch.device:
        """Join the process group; returns this process's device (its own GPU when there are several)."""
        if self.world == 1:
            return device
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self.backend = "nccl" if device.type == "cuda" else "gloo"  # gloo: the CPU's collective backend
        dist.init_process_group(self.backend, device_id=device if device.type == "cuda" else None)
        self.device = device if device.type == "cuda" else torch.device("cpu")
        return device

    def sum_tensor(self, values: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return values
        shared = values.to(self.device, copy=True)
        dist.all_reduce(shared)
        return shared.to(values.device)

    def sum(self, *values: float) -> list[float]:
        """Each number added up over all processes."""
        if self.world == 1:
            return list(values)
        return self.sum_tensor(torch.tensor(values, dtype=torch.float64)).tolist()

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one: all of them must stop at the same step."""
        return self.sum(float(bool(flag)))[0] > 0 if self.world > 1 else bool(flag)

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
