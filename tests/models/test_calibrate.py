"""The machine's matmul rate behind the plan's time estimate: measured once, then read from the app's folder."""

import json
import time

import pytest

from easytune.models import calibrate
from easytune.models.calibrate import BUSY_KEY, CACHE_FILE, bf16_pays, matmul_rate


@pytest.fixture
def quiet(monkeypatch):
    """The machine as the test says it is: the suite's other process keeps it busy half the time."""
    state = {"busy": False}
    monkeypatch.setattr(calibrate, "machine_busy", lambda: state["busy"])
    return state


def test_rate_is_measured_once_and_kept(settings, quiet):
    started = time.perf_counter()
    rate = matmul_rate(settings, "cpu")
    assert rate is not None and 1e8 < rate < 1e14  # a plausible CPU: 0.1 GFLOP/s to 100 TFLOP/s
    kept = json.loads((settings.home / CACHE_FILE).read_text(encoding="utf-8"))
    assert rate in kept.values() and all(key.startswith("cpu") for key in kept)
    assert len(kept) == 2  # fp32 and bf16 from the same measurement: whether bf16 pays is decided from both
    first = time.perf_counter() - started
    started = time.perf_counter()
    assert matmul_rate(settings, "cpu") == rate
    assert time.perf_counter() - started < min(0.1, first / 5)  # read, not measured again


def test_a_figure_measured_while_busy_is_measured_again_once_the_machine_is_quiet(settings, quiet):
    quiet["busy"] = True  # a job trains while the user plans the next one
    measured = matmul_rate(settings, "cpu")
    path = settings.home / CACHE_FILE
    kept = json.loads(path.read_text(encoding="utf-8"))
    assert len(kept[BUSY_KEY]) == 2  # fp32 and bf16 both marked as measured busy
    key = next(name for name, rate in kept.items() if rate == measured)
    kept[key] = measured / 3  # what a machine busy with a training run can read
    path.write_text(json.dumps(kept), encoding="utf-8")
    assert matmul_rate(settings, "cpu") == measured / 3  # still busy: nothing better to measure, none measured
    quiet["busy"] = False
    again = matmul_rate(settings, "cpu")
    assert again > measured / 3  # measured again, the higher figure kept
    assert BUSY_KEY not in json.loads(path.read_text(encoding="utf-8"))
    started = time.perf_counter()
    assert matmul_rate(settings, "cpu") == again
    assert time.perf_counter() - started < 0.1  # trusted now: read, not measured


def test_a_device_that_cannot_be_measured_gives_no_rate(settings):
    assert matmul_rate(settings, "no-such-device") is None
    assert not (settings.home / CACHE_FILE).exists()


def test_a_cpu_trains_bf16_only_where_it_measured_clearly_faster():
    xeon, laptop, close = {"fp32": 190e9, "bf16": 2350e9}, {"fp32": 200e9, "bf16": 150e9}, {"fp32": 2e11, "bf16": 3e11}
    assert bf16_pays(xeon, 135_000_000)  # AMX, a real model
    assert not bf16_pays(xeon, 1_200_000)  # the built-in model: its step is Python, not products
    assert not bf16_pays(laptop, 135_000_000)  # a laptop emulating bf16
    assert not bf16_pays(close, 135_000_000)  # faster, not clearly: the rest of a step would eat it
    assert not bf16_pays(None, 135_000_000)


def test_precision_auto_is_one_rule_for_the_plan_the_fit_check_and_the_worker(settings, monkeypatch):
    from easytune.jobs.resolve import device_and_precision
    from easytune.models import calibrate, hardware
    from easytune.models.calibrate import auto_precision
    from easytune.plan.schema import TrainingPlan

    assert auto_precision("mps", gpu_bf16=True) == "fp32"  # Apple's GPU reports bf16 but trains in fp32
    assert auto_precision("cuda", gpu_bf16=True) == "bf16" and auto_precision("cuda") == "fp32"
    assert auto_precision("xpu") == "bf16"
    assert auto_precision("cpu", cpu_bf16=True) == "bf16" and auto_precision("cpu", gpu_bf16=True) == "fp32"
    # the job's record (what the worker trains with) asks the same rule
    mac = hardware.Hardware(mps=True, ram_total=16 << 30, ram_available=12 << 30)
    monkeypatch.setattr(hardware, "probe", lambda *args: mac)
    assert device_and_precision(settings, TrainingPlan(), 135_000_000)[:2] == ("mps", "fp32")
    monkeypatch.setattr(hardware, "probe", lambda *args: hardware.Hardware())
    monkeypatch.setattr(calibrate, "cpu_trains_bf16", lambda settings, params: True)
    assert device_and_precision(settings, TrainingPlan(), 135_000_000)[:2] == ("cpu", "bf16")
    assert device_and_precision(settings, TrainingPlan(method="full"), 135_000_000)[:2] == ("cpu", "fp32")


def test_the_fit_check_on_apple_silicon_estimates_the_precision_the_run_uses(settings, monkeypatch):
    from easytune.models import hardware, registry

    mac = hardware.Hardware(mps=True, ram_total=16 << 30, ram_available=12 << 30)
    assert mac.bf16  # what the machine reports
    monkeypatch.setattr(hardware, "probe", lambda home: mac)
    assert registry.fit(settings, "easytune-tiny")["estimate"]["dtype"] == "fp32"
