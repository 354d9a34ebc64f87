"""What this machine has for training: GPUs (CUDA, Apple MPS, Intel XPU), CPU cores, memory, disk.

PyTorch is imported inside `probe()` only, and only where its build can use an accelerator; without it the
machine is reported as CPU only. Nothing here creates a GPU context: names, memory and capabilities come from
device properties.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

MPS_SHARE = 0.75  # of unified memory that a training process on Apple silicon can count on
# see tune_cpu_allocator
MALLOC_EXACT = 1 << 20  # resident memory follows the live tensors
MALLOC_REUSE = 32 << 20  # glibc's largest threshold: freed tensor memory is reused
REUSE_TRIM = 256 << 20  # with reuse, free memory kept at the heap's top (see tune_cpu_allocator)
HEAP_REUSE_ROOM = 2  # reuse only where twice the estimated peak is free (the heap's fragments: up to 1.9×)


@dataclass
class GpuInfo:
    index: int
    name: str
    total_memory: int
    bf16: bool
    compute_capability: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Hardware:
    cuda: list[GpuInfo] = field(default_factory=list)
    mps: bool = False
    xpu: list[GpuInfo] = field(default_factory=list)
    cpu_physical: int | None = None
    cpu_logical: int = 1
    ram_total: int = 0
    ram_available: int = 0
    disk_path: str | None = None
    disk_free: int | None = None
    torch_version: str | None = None
    cuda_version: str | None = None
    four_bit: bool = False  # bitsandbytes is installed and a CUDA GPU is there: QLoRA can run

    @property
    def accelerator(self) -> str:
        """The device training would use: cuda, mps, xpu or cpu."""
        if self.cuda:
            return "cuda"
        if self.mps:
            return "mps"
        if self.xpu:
            return "xpu"
        return "cpu"

    def training_memory(self, device: str | None = None) -> int:
        """Bytes a training run on `device` (default: the accelerator) can use."""
        device = device or self.accelerator
        if device == "cuda" and self.cuda:
            return max(g.total_memory for g in self.cuda)
        if device == "xpu" and self.xpu:
            return max(g.total_memory for g in self.xpu)
        if device == "mps" and self.mps:
            return int(min(self.ram_total * MPS_SHARE, self.ram_available))
        return int(self.ram_available)

    @property
    def bf16(self) -> bool:
        if self.cuda:
            return all(g.bf16 for g in self.cuda)
        return self.mps or bool(self.xpu)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(accelerator=self.accelerator, training_memory=self.training_memory(), bf16=self.bf16)
        return data


def _existing(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _memory() -> tuple[int, int]:
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except ImportError:  # pragma: no cover - psutil is a dependency; this is the bare fallback
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        available = os.sysconf("SC_AVPHYS_PAGES") * size
        return pages * size, available


def torch_build() -> str | None:
    """The installed PyTorch's version, its build after the "+" (2.13.0+cpu), from its package's metadata."""
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        return None


def _physical_cores() -> int | None:
    try:
        import psutil

        return psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover
        return None


def _cuda_devices(torch) -> list[GpuInfo]:
    try:
        if not torch.cuda.is_available():
            return []
        devices = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            major, minor = getattr(props, "major", 0), getattr(props, "minor", 0)
            is_rocm = getattr(torch.version, "hip", None) is not None
            devices.append(GpuInfo(index=index, name=props.name, total_memory=int(props.total_memory),
                                   bf16=bool(is_rocm or major >= 8),  # Ampere and newer
                                   compute_capability=f"{major}.{minor}"))
        return devices
    except Exception:  # noqa: BLE001 - a broken driver is reported as no GPU, not a crash
        return []


def _xpu_devices(torch) -> list[GpuInfo]:
    try:
        xpu = getattr(torch, "xpu", None)
        if xpu is None or not xpu.is_available():
            return []
        devices = []
        for index in range(xpu.device_count()):
            props = xpu.get_device_properties(index)
            devices.append(GpuInfo(index=index, name=str(getattr(props, "name", "Intel XPU")),
                                   total_memory=int(getattr(props, "total_memory", 0)), bf16=True))
        return devices
    except Exception:  # noqa: BLE001
        return []


def _mps(torch) -> bool:
    try:
        backend = getattr(torch.backends, "mps", None)
        return bool(backend is not None and backend.is_available())
    except Exception:  # noqa: BLE001
        return False


def probe(disk_path: str | Path | None = None) -> Hardware:
    """Look at the machine. disk_path: where models and jobs will be written (free space reported)."""
    ram_total, ram_available = _memory()
    hw = Hardware(cpu_physical=_physical_cores(), cpu_logical=os.cpu_count() or 1,
                  ram_total=ram_total, ram_available=ram_available)
    if disk_path is not None:
        where = _existing(Path(disk_path))
        try:
            hw.disk_path, hw.disk_free = str(where), int(shutil.disk_usage(where).free)
        except OSError:
            hw.disk_path = str(where)
    build = torch_build()
    if build is not None and build.endswith("+cpu"):  # a CPU-only build has no accelerator to look for
        hw.torch_version = build  # (importing it would cost the app 180 MiB and 1.3 s, for nothing)
        return hw
    try:
        import torch
    except ImportError:
        return hw
    hw.torch_version = str(torch.__version__)
    hw.cuda_version = getattr(torch.version, "cuda", None) or getattr(torch.version, "hip", None)
    hw.cuda = _cuda_devices(torch)
    hw.mps = _mps(torch)
    hw.xpu = _xpu_devices(torch)
    hw.four_bit = bool(hw.cuda) and importlib.util.find_spec("bitsandbytes") is not None
    return hw


def tune_cpu_allocator(threshold: int = MALLOC_EXACT) -> bool:
    """Fix the C library's malloc thresholds for a CPU training process, so that its memory behaves the
    same in every step and in every run (glibc otherwise adapts them as blocks are freed).

    Allocations of `threshold` bytes or more are mapped on their own and unmapped when freed; smaller
    ones come from the heap, whose freed memory is kept for reuse (its top is given back above
    `trim_threshold`). With MALLOC_EXACT nearly every tensor is mapped, so resident memory follows the
    live tensors, as the estimator assumes; but each new mapping costs a page fault and zeroing per
    4 KiB. With MALLOC_REUSE tensors reuse the heap: measured on a ~90M Llama, LoRA steps ran
    1.5–1.8× as fast, and the heap's fragments made the peak 1.2–1.9× the exact one
    (`python -m easytune.models.bench_memory --reuse`); see cpu_allocator_threshold for the choice.
    Call it early in the training process. Returns False where there is nothing to tune (not
    Linux/glibc). The environment variables MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ do the
    same for a child process.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, int(threshold)) == 1
                and mallopt(m_trim_threshold, trim_threshold(threshold)) == 1)


def trim_threshold(threshold: int) -> int:
    """Free memory the heap keeps at its top before giving it back. Exact accounting: twice the threshold.
    Reuse: REUSE_TRIM, since a step's tensors are freed and made again at every step, and memory given back
    is faulted in again page by page: on a LoRA step of SmolLM2-135M here, 256 MiB instead of 64 took the
    page faults from 34,000 to 8,000 a step and the kernel's time in it from 0.65 s to 0.58 s."""
    return REUSE_TRIM if threshold >= MALLOC_REUSE else 2 * int(threshold)


def cpu_allocator_threshold(estimated_peak: int, available: int) -> int:
    """Heap reuse (fast) where memory has room for its fragments, exact accounting where it is tight."""
    return MALLOC_REUSE if HEAP_REUSE_ROOM * estimated_peak + REUSE_TRIM <= available else MALLOC_EXACT


def allocator_env(threshold: int = MALLOC_EXACT) -> dict[str, str]:
    """Environment variables with the effect of tune_cpu_allocator(), for starting a subprocess."""
    return {"MALLOC_MMAP_THRESHOLD_": str(int(threshold)), "MALLOC_TRIM_THRESHOLD_": str(trim_threshold(threshold))}
