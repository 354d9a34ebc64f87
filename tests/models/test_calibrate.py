"""The machine's matmul rate behind the plan's time estimate: measured once, then read from the app's folder."""

import json
import time

from easytune.models.calibrate import CACHE_FILE, matmul_rate


def test_rate_is_measured_once_and_kept(settings):
    started = time.perf_counter()
    rate = matmul_rate(settings, "cpu")
    assert rate is not None and 1e8 < rate < 1e14  # a plausible CPU: 0.1 GFLOP/s to 100 TFLOP/s
    kept = json.loads((settings.home / CACHE_FILE).read_text(encoding="utf-8"))
    assert list(kept.values()) == [rate] and next(iter(kept)).startswith("cpu|")
    first = time.perf_counter() - started
    started = time.perf_counter()
    assert matmul_rate(settings, "cpu") == rate
    assert time.perf_counter() - started < min(0.1, first / 5)  # read, not measured again


def test_a_device_that_cannot_be_measured_gives_no_rate(settings):
    assert matmul_rate(settings, "no-such-device") is None
    assert not (settings.home / CACHE_FILE).exists()
