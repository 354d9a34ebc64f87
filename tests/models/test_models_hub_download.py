"""Hub downloads against a local hub (tests/fakehub.py, reached through HF_ENDPOINT): progress up to
the total, a cut or stopped download continuing where it stopped, a killed `easytune models add`
picking up its half-downloaded file, and pickle-only repositories refused before any download."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fakehub import FakeHub

from easytune.i18n import UserError
from easytune.models import hub_download, registry, sources
from easytune.settings import load_settings
from support import ROOT, cli, cli_json

TINY = ROOT / "assets" / "tiny-model"
WEIGHTS = "model.safetensors"


@pytest.fixture
def hub(hf_cache, monkeypatch):
    with FakeHub() as server:
        server.add_folder("acme/tiny", TINY, skip=("README.md",))
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def blob_of(cache: Path, repo_id: str, data: bytes) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--")) / "blobs" / hashlib.sha256(data).hexdigest()


def test_download_reports_progress_up_to_the_total_and_lands_in_the_cache(hub, hf_cache):
    seen: list[hub_download.DownloadProgress] = []
    source = sources.download("acme/tiny", progress=seen.append)

    sizes = {p.name: p.stat().st_size for p in TINY.iterdir() if p.name != "README.md"}
    assert {s.total for s in seen} == {sum(sizes.values())}  # known before the first byte moved
    assert [s.done for s in seen] == sorted(s.done for s in seen)  # never goes backwards
    last = seen[-1]
    assert last.finished and last.done == last.total and last.files_done == last.files_total == len(sizes)
    assert any(WEIGHTS in s.current for s in seen) and any(s.speed > 0 for s in seen)
    assert source.kind == "download" and Path(source.path).parent.parent == hf_cache / "models--acme--tiny"
    for name in sizes:  # the snapshot is the hub's own layout: links to verified blobs
        assert (Path(source.path) / name).read_bytes() == (TINY / name).read_bytes()
    assert not list(hf_cache.rglob("*.incomplete"))
    from huggingface_hub import scan_cache_dir, snapshot_download

    scanned = scan_cache_dir(hf_cache)  # huggingface_hub reads it as its own
    assert not scanned.warnings and [r.repo_id for r in scanned.repos] == ["acme/tiny"]
    assert snapshot_download("acme/tiny", cache_dir=hf_cache, local_files_only=True) == source.path

    hub.requests.clear()
    again = sources.resolve("acme/tiny", fetch=True)  # in the cache now: no network at all
    assert again.path == source.path and again.kind == "hf_cache" and hub.requests == []


def test_a_cut_connection_resumes_without_starting_over(hub, hf_cache):
    size = (TINY / WEIGHTS).stat().st_size
    hub.cut_after[WEIGHTS] = 1_000_000  # the first GET drops the connection after 1 MB
    source = sources.download("acme/tiny")
    assert hub.gets(WEIGHTS) == [None, "bytes=1000000-"]
    assert hub.served[WEIGHTS] == size  # every byte sent once
    assert (Path(source.path) / WEIGHTS).read_bytes() == (TINY / WEIGHTS).read_bytes()


def big_safetensors(size: int) -> bytes:
    """Real safetensors bytes of about `size`, random enough that no two runs share a blob."""
    import torch
    from safetensors.torch import save

    return save({"weight": torch.randint(0, 256, (size,), dtype=torch.uint8)})


def test_a_cancelled_download_continues_next_time(hub, hf_cache):
    weights = big_safetensors(6_000_000)  # (the download checks that what it kept reads as safetensors)
    hub.add_repo("acme/big", {**{p.name: p.read_bytes() for p in TINY.iterdir() if p.suffix == ".json"},
                              WEIGHTS: weights})
    hub.throttle[WEIGHTS] = 4_000_000  # slow enough for the progress reports to catch it midway

    def cancel_midway(status):
        if status.done > 2_000_000:
            assert hub_download.cancel_download("acme/big")

    with pytest.raises(UserError) as stopped:
        sources.download("acme/big", progress=cancel_midway)
    assert stopped.value.key == "models.download_cancelled"
    assert "continue" in stopped.value.message("en") and "继续" in stopped.value.message("zh")
    partial = blob_of(hf_cache, "acme/big", weights).with_suffix(".incomplete")
    kept = partial.stat().st_size
    assert 0 < kept < len(weights) and hub_download.running_downloads() == []

    hub.throttle.clear()
    served_before, seen = hub.served[WEIGHTS], []
    source = sources.download("acme/big", progress=seen.append)
    assert hub.gets(WEIGHTS)[-1] == f"bytes={kept}-"
    assert hub.served[WEIGHTS] - served_before == len(weights) - kept  # only the missing bytes
    assert seen[-1].resumed == kept and seen[-1].done == seen[-1].total
    assert (Path(source.path) / WEIGHTS).read_bytes() == weights


def test_pickle_only_repository_is_refused_before_downloading(hub, hf_cache):
    files = {p.name: p.read_bytes() for p in TINY.iterdir() if p.suffix == ".json"}
    hub.add_repo("acme/old", {**files, "pytorch_model.bin": b"\x80\x04pickle"})
    with pytest.raises(UserError) as refused:
        sources.resolve("acme/old", fetch=True)
    assert refused.value.key == "models.hub_pickle_only"
    assert "pytorch_model.bin" in refused.value.message("en") and "safetensors" in refused.value.message("en")
    assert "safetensors" in refused.value.message("zh")
    assert not hub.served and not (hf_cache / "models--acme--old" / "blobs").exists()

    with pytest.raises(UserError) as unknown:
        sources.download("acme/nothing-here")
    assert unknown.value.key == "models.hub_not_found" and hub.url in unknown.value.message("en")


@pytest.mark.slow
def test_cli_download_killed_midway_resumes_registers_and_answers(hub, hf_cache, home):
    """`easytune models add` killed mid-file (the app closed, the laptop slept) continues on the next
    run from the bytes it kept; the model is then registered and answers."""
    size = (TINY / WEIGHTS).stat().st_size
    hub.throttle[WEIGHTS] = 1_000_000
    env = dict(os.environ, EASYTUNE_HOME=str(home), EASYTUNE_LANG="en")
    first = subprocess.Popen([sys.executable, "-m", "easytune.cli", "models", "add", "acme/tiny", "--json"],
                             env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = blob_of(hf_cache, "acme/tiny", (TINY / WEIGHTS).read_bytes()).with_suffix(".incomplete")
    deadline = time.monotonic() + 30
    while (not partial.exists() or partial.stat().st_size < 300_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()
    first.wait(timeout=10)
    kept = partial.stat().st_size
    assert 0 < kept < size

    hub.throttle.clear()
    added = cli_json("models", "add", "acme/tiny", "--name", "tiny-from-hub", home=home)
    assert added["model"]["name"] == "tiny-from-hub" and added["model"]["hub_id"] == "acme/tiny"
    assert added["source"]["kind"] == "download" and not added["already"]
    assert hub.gets(WEIGHTS)[-1] == f"bytes={kept}-"  # asked only for what it lacked
    assert hub.served[WEIGHTS] < size + 500_000  # not sent twice: only what was in flight at the kill is lost

    settings = load_settings()  # the pickers list it
    assert "tiny-from-hub" in [m["name"] for m in registry.list_models(settings)["models"]]
    answer = cli_json("chat", "tiny-from-hub", "-q", "几点发货？", "--max-new-tokens", "8", home=home)
    assert answer["answer"].strip()

    hub.requests.clear()  # added again: already there, no download
    assert registry.add_model(settings, "acme/tiny")["already"] and hub.requests == []
    refused = cli("models", "add", "acme/absent", "--json", home=home, check=False)
    assert refused.returncode == 2 and json.loads(refused.stdout)["error"] == "models.hub_not_found"
