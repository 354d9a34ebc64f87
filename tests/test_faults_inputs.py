"""What a hostile or unlucky user hands EasyTune: dataset names that look like paths, a folder or a device
given as a data file, weights that are links out of their folder or not safetensors at all, a full disk
under the database, a small adapter export on a nearly full disk. Each gets a message naming the thing and
the fix (never a traceback), nothing is written outside the home or a path the user chose for it, and
nothing saved before is lost.

A full disk is a real one: a small tmpfs mounted in a mount namespace of the test's own (`unshare -Urm`)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from easytune.data.readers import supported_formats
from easytune.i18n import UserError, t
from support import ROOT, cli, cli_json

TINY = ROOT / "assets" / "tiny-model"


def with_own_mounts(script: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run a shell script in a user and mount namespace of its own, where it may mount small tmpfs disks
    that fill up for real; `et` in the script is the easytune CLI. The mounts vanish when it ends."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-Urm", "true"], capture_output=True).returncode:
        pytest.skip("a small real disk needs `unshare -Urm` (user and mount namespaces)")
    prelude = 'et() { "$PY" -m easytune.cli "$@"; }\n'
    return subprocess.run(["unshare", "-Urm", "sh", "-c", prelude + script], capture_output=True, text=True,
                          env=dict(os.environ, PY=sys.executable, **env), cwd=ROOT, timeout=timeout)


# ---- names are display names, never paths ---------------------------------------------------------

def test_datasets_named_like_paths_download_inside_the_home(settings, home, tmp_path):
    from easytune import datasets

    outside = tmp_path / "outside"
    names = ["../" * 12 + str(outside / "escaped").lstrip("/"), str(outside / "abs"), "..", ".hidden"]
    ids = []
    for n, name in enumerate(names):
        source = tmp_path / f"qa{n}.csv"
        source.write_text(f"question,answer\nq{n},answer {n}\n", encoding="utf-8")
        added = datasets.add_dataset(settings, source, name=name, val_ratio=0)["dataset"]
        assert added["name"] == name  # shown as the user gave it
        ids.append(added["id"])

    downloads = (home / "downloads").resolve()
    for n, dataset_id in enumerate(ids):  # the Datasets page's "download cleaned rows"
        path = datasets.export_dataset(settings, dataset_id).resolve()
        assert path.parent == downloads and path.suffix == ".jsonl", path
        assert json.loads(path.read_text(encoding="utf-8"))["messages"][-1]["content"] == f"answer {n}"
    assert sorted(p.name for p in downloads.iterdir()) == sorted(
        ["dataset.jsonl", "hidden.jsonl", f"{str(outside).strip('/').replace('/', '-')}-abs.jsonl",
         f"{str(outside).strip('/').replace('/', '-')}-escaped.jsonl"])

    chosen = tmp_path / "mine"  # the CLI, given a folder, writes the file into it
    chosen.mkdir()
    written = cli_json("data", "export", names[0], "--out", str(chosen), home=home)["path"]
    assert Path(written).parent == chosen and Path(written).is_file()
    assert not outside.exists()


def test_a_log_download_for_a_job_id_like_a_path_writes_nothing(settings, home, tmp_path):
    from easytune.ui.wizard import log_file

    with pytest.raises(UserError) as unknown:
        log_file(settings, "../../escaped", "en")
    assert unknown.value.key == "jobs.error.unknown"
    assert not (tmp_path / "escaped-log.txt").exists() and not list(tmp_path.glob("**/escaped-log.txt"))


# ---- data add: a file, nothing else ---------------------------------------------------------------

def test_data_add_names_a_folder_and_a_device_for_what_they_are(home, tmp_path):
    folder = tmp_path / "chats"
    folder.mkdir()
    (folder / "faq.jsonl").write_text('{"question": "hi", "answer": "hello"}\n', encoding="utf-8")
    refused = cli("data", "add", str(folder), "--json", home=home, check=False)
    assert refused.returncode == 2 and json.loads(refused.stdout)["error"] == "datasets.is_folder"
    assert refused.stderr.strip() == t("datasets.is_folder", "en", path=str(folder), formats=supported_formats())
    assert "is a folder" in refused.stderr and ".jsonl" in refused.stderr

    device = cli("--lang", "zh", "data", "add", "/dev/zero", home=home, check=False, timeout=60)
    assert device.returncode == 2 and "Traceback" not in device.stderr
    assert device.stderr.strip() == t("datasets.not_regular_file", "zh", path="/dev/zero", formats=supported_formats())
    assert "不是普通文件" in device.stderr

    pipe = tmp_path / "rows.jsonl"
    os.mkfifo(pipe)  # nobody writes to it: reading would wait forever
    refused = cli("data", "add", str(pipe), home=home, check=False, timeout=60)
    assert refused.returncode == 2 and "not a regular file" in refused.stderr
    assert cli_json("data", "list", home=home) == []


# ---- models add: weights from inside the folder, and safetensors only ----------------------------

def model_folder(path: Path, weights) -> Path:
    """The tiny model's config and tokenizer, with `weights(target)` making model.safetensors."""
    path.mkdir()
    for item in TINY.glob("*.json"):
        shutil.copyfile(item, path / item.name)
    weights(path / "model.safetensors")
    return path


def test_models_add_refuses_weights_linked_outside_or_not_safetensors(settings, home, tmp_path):
    from easytune.models.registry import registered
    from easytune.models.sources import check_folder

    real = TINY / "model.safetensors"
    linked = model_folder(tmp_path / "linked", lambda target: target.symlink_to(real))  # valid, but elsewhere
    junk = model_folder(tmp_path / "junk", lambda target: target.write_bytes(os.urandom(5000)))
    cut = model_folder(tmp_path / "cut", lambda target: target.write_bytes(real.read_bytes()[:1_000_000]))

    refused = cli("models", "add", str(linked), "--json", home=home, check=False)
    assert refused.returncode == 2 and json.loads(refused.stdout)["error"] == "models.weights_link_outside"
    assert refused.stderr.strip() == t("models.weights_link_outside", "en", file="model.safetensors",
                                       path=str(linked), target=str(real.resolve()))
    assert "copy the real weights file into the folder" in refused.stderr

    refused = cli("models", "add", str(junk), home=home, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == t("models.weights_not_safetensors", "en", file="model.safetensors",
                                       path=str(junk))
    zh = cli("--lang", "zh", "models", "add", str(cut), home=home, check=False)
    assert "不是 safetensors 文件" in zh.stderr and "重新复制或下载" in zh.stderr and "Traceback" not in zh.stderr
    assert check_folder(cut).problem == "models.weights_not_safetensors"  # cut short: a tensor past its end
    assert check_folder(TINY).ok
    assert registered(settings) == []


# ---- a full disk under the database -------------------------------------------------------------

def test_a_full_disk_under_the_database_is_said_and_loses_nothing(home, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    home.mkdir()
    result = with_own_mounts("""
mount -t tmpfs -o size=4m tmpfs "$EASYTUNE_HOME"
et feedback add tiny --prompt first --answer kept --rating up --json > /dev/null || exit 3
dd if=/dev/zero of="$EASYTUNE_HOME/filler" bs=4k 2> /dev/null
truncate -s -64K "$EASYTUNE_HOME/filler"  # room to open the database, not for a long answer
ANSWER=$(head -c 100000 /dev/zero | tr '\\0' a)
et feedback add tiny --prompt second --answer "$ANSWER" --rating down --json > "$OUT/full.json" 2> "$OUT/full.err"
echo $? > "$OUT/full.rc"
dd if=/dev/zero of="$EASYTUNE_HOME/filler2" bs=4k 2> /dev/null  # not a byte left
et --lang zh feedback add tiny --prompt third --answer short --rating up > /dev/null 2> "$OUT/zh.err"
echo $? > "$OUT/zh.rc"
rm "$EASYTUNE_HOME"/filler*
et feedback list --json > "$OUT/after.json"
""", EASYTUNE_HOME=str(home), EASYTUNE_LANG="en", OUT=str(out))
    assert result.returncode == 0, result.stderr

    assert (out / "full.rc").read_text().strip() == "2"
    error = json.loads((out / "full.json").read_text())
    assert error["error"] == "store.disk_full" and error["params"]["path"] == str(home / "easytune.db")
    message = (out / "full.err").read_text()
    assert "Traceback" not in message and "is full" in message and "Free some space" in message
    assert str(home / "easytune.db") in message

    assert (out / "zh.rc").read_text().strip() == "2"  # with no room at all, SQLite cannot even open it
    zh = (out / "zh.err").read_text()
    assert "Traceback" not in zh and "磁盘已满" in zh and str(home / "easytune.db") in zh

    kept = json.loads((out / "after.json").read_text())
    assert [(row["prompt"], row["answer"]) for row in kept] == [("first", "kept")]


# ---- an export's free-space reserve follows its size ---------------------------------------------

def test_a_small_adapter_exports_onto_a_nearly_full_disk(demo_job, tmp_path):
    from test_export import private_home

    demo_home, job = demo_job
    home = private_home(demo_home, tmp_path / "home")
    disk, small, out = tmp_path / "disk", tmp_path / "small", tmp_path / "out"
    for folder in (disk, small, out):
        folder.mkdir()
    result = with_own_mounts("""
mount -t tmpfs -o size=64m tmpfs "$DISK"
mount -t tmpfs -o size=24m tmpfs "$SMALL"
et export "$JOB" --format adapter --out "$DISK/adapter" --json > "$OUT/fits.json" 2> "$OUT/fits.err"
ls "$DISK/adapter" > "$OUT/files.txt"
et export "$JOB" --format adapter --out "$SMALL/adapter" --json > "$OUT/small.json" 2> /dev/null
exit 0
""", EASYTUNE_HOME=str(home), EASYTUNE_LANG="en", DISK=str(disk), SMALL=str(small), OUT=str(out), JOB=job["id"])
    assert result.returncode == 0, result.stderr

    exported = json.loads((out / "fits.json").read_text())
    assert exported["state"] == "READY" and exported["size_bytes"] < 4 * 2**20, (out / "fits.err").read_text()
    assert "adapter_model.safetensors" in (out / "files.txt").read_text().split()

    refused = json.loads((out / "small.json").read_text())  # 24 MB cannot hold it with its margin
    assert refused["error"] == "export.error.disk" and refused["params"]["reserve"] == "32.0 MB"
