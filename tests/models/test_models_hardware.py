"""Hardware probe: what is there, and a CPU-only answer when PyTorch is absent."""

from __future__ import annotations

import builtins
import subprocess
import sys

import pytest

from easytune.models import hardware
from easytune.models.hardware import GpuInfo, Hardware, probe


def test_probe_reports_this_machine(tmp_path):
    hw = probe(tmp_path / "not" / "yet")
    data = hw.to_dict()
    assert set(data) >= {"cuda", "mps", "xpu", "cpu_physical", "cpu_logical", "ram_total", "ram_available",
                         "disk_path", "disk_free", "torch_version", "accelerator", "training_memory", "bf16"}
    assert data["cpu_logical"] >= 1 and data["ram_total"] >= data["ram_available"] > 0
    assert data["disk_free"] > 0 and data["disk_path"] == str(tmp_path)  # nearest existing parent
    assert data["torch_version"]
    assert data["accelerator"] in {"cuda", "mps", "xpu", "cpu"}
    for gpu in data["cuda"]:
        assert gpu["total_memory"] > 0 and gpu["name"]


def test_probe_without_torch(monkeypatch):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    monkeypatch.setattr(hardware, "torch_build", lambda: "2.13.0")  # installed, for a GPU, but will not load
    hw = probe()
    assert hw.accelerator == "cpu" and hw.cuda == [] and hw.torch_version is None
    assert hw.training_memory() == hw.ram_available


def test_a_cpu_build_of_torch_is_not_imported_to_find_no_accelerator():
    """Planning in the app's process probes the machine: a CPU-only PyTorch would only cost it memory."""
    if not (hardware.torch_build() or "").endswith("+cpu"):
        pytest.skip(f"PyTorch here is not a CPU-only build: {hardware.torch_build()}")
    code = ("import sys; from easytune.models.hardware import probe; hw = probe(); "
            "print(hw.accelerator, hw.torch_version, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cpu", hardware.torch_build(), "False"], out.stdout + out.stderr


def test_training_memory_per_device():
    gpu = GpuInfo(index=0, name="Test GPU", total_memory=16 * 2**30, bf16=True, compute_capability="8.9")
    hw = Hardware(cuda=[gpu], cpu_logical=8, ram_total=64 * 2**30, ram_available=40 * 2**30)
    assert hw.accelerator == "cuda" and hw.training_memory() == 16 * 2**30 and hw.bf16
    assert hw.training_memory("cpu") == 40 * 2**30
    mac = Hardware(mps=True, ram_total=32 * 2**30, ram_available=30 * 2**30)
    assert mac.accelerator == "mps" and mac.training_memory() == 24 * 2**30


def test_cpu_allocator_tuning_runs_in_a_training_process():
    from easytune.models.hardware import allocator_env

    code = "from easytune.models.hardware import tune_cpu_allocator; print(tune_cpu_allocator())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    expected = "True" if sys.platform.startswith("linux") else "False"
    assert out.stdout.strip() == expected
    env = allocator_env()
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) > 0 and int(env["MALLOC_TRIM_THRESHOLD_"]) > 0


def test_freed_memory_is_reused_only_where_twice_the_estimated_peak_is_free():
    from easytune.models.hardware import MALLOC_EXACT, MALLOC_REUSE, cpu_allocator_threshold

    gib = 1024**3
    assert cpu_allocator_threshold(4 * gib, 16 * gib) == MALLOC_REUSE  # room for the heap's fragments
    assert cpu_allocator_threshold(10 * gib, 16 * gib) == MALLOC_EXACT  # tight: exact accounting, as estimated
