"""A run over two machines, played on the loopback address: two `easytune train` launches (one process each, gloo),
each with its own home and its own copy of the data, joined through the main machine's port. They train as one
run on the same split, as a one-machine run of the same effective batch does; a plan that differs, a main machine
nobody answers for, and a rank started twice are each said in plain words."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import ROOT, cli, free_port, write_plan

pytestmark = pytest.mark.slow

DATA = ROOT / "assets" / "demo" / "shop_faq_en.jsonl"
RUN = {"max_steps": 12, "eval_every": 6, "retention_ratio": 0.0, "dataset": "shop.jsonl"}  # each machine's own copy


def machine(tmp_path: Path, name: str, **settings) -> tuple[Path, Path]:
    """(folder, plan) of one 'machine': a folder holding its copy of the data file and of the plan."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "shop.jsonl").write_bytes(DATA.read_bytes())
    return folder, write_plan(folder / "plan.yaml", **{**RUN, **settings})


def start_train(folder: Path, *flags: str, lang: str = "en") -> subprocess.Popen:
    """`easytune train --config plan.yaml FLAGS` started in `folder` (the plan names its data relative to it),
    with the folder's own EasyTune home."""
    env = dict(os.environ, EASYTUNE_HOME=str(folder / "home"), EASYTUNE_LANG=lang,
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.Popen([sys.executable, "-m", "easytune.cli", "train", "--config", "plan.yaml", "--json", *flags],
                            cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def ended(proc: subprocess.Popen, timeout: float = 300) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert out.strip(), err
    return json.loads(out)


def events(job: dict) -> list[dict]:
    return [json.loads(line) for line in (Path(job["job_dir"]) / "events.jsonl").read_text().splitlines()]


def logged(job: dict, key: str) -> list[dict]:
    return [e["params"] for e in events(job) if e["type"] == "log" and e["key"] == key]


def record(job: dict) -> dict:
    return json.loads((Path(job["job_dir"]) / "job.json").read_text())


def test_a_rank_outside_the_run_or_an_address_that_is_none_is_refused_before_a_job_exists(tmp_path):
    _, plan = machine(tmp_path, "machine2", num_machines=2)
    home = tmp_path / "home"
    for flags, lang, said in ((("--machine-rank", "2"), "en", "ranks go from 0 to 1"),
                              (("--machine-rank", "2"), "zh", "编号从 0 到 1"),
                              (("--main-process-ip", "main machine"), "en", "is not an IP address or a host name"),
                              (("--main-process-ip", "main machine"), "zh", "不是 IP 地址或主机名")):
        result = cli("train", "--config", str(plan), *flags, home=home, check=False, lang=lang)
        assert result.returncode != 0 and said in result.stderr, (flags, lang, result.stderr)
    assert not (home / "jobs").exists() or not any((home / "jobs").iterdir())


def test_two_machines_train_one_run_like_one_machine_with_the_same_batch(tmp_path):
    port = free_port()
    main_folder, _ = machine(tmp_path, "machine0", num_machines=2, main_process_port=port, join_timeout=240)
    other_folder, _ = machine(tmp_path, "machine1", num_machines=2, main_process_port=port, join_timeout=240)
    alone_folder, _ = machine(tmp_path, "alone", batch_size=16)  # one process, the two machines' batches together
    started = time.time()
    joining = ("--machine-rank", "1", "--main-process-ip", "127.0.0.1")  # the flags another machine is started with
    runs = [start_train(main_folder), start_train(other_folder, *joining), start_train(alone_folder)]
    main, other, alone = (ended(proc) for proc in runs)
    print(f"two machines and one, side by side: {time.time() - started:.0f} s")
    for job in (main, other, alone):
        assert job["state"] == "COMPLETED", job["error_message"]

    # the same split on both machines (made from each one's own copy), and on the one-machine run
    assert record(main)["split_sha256"] == record(other)["split_sha256"] == record(alone)["split_sha256"]
    seen = [logged(job, "train.log.machines")[0] for job in (main, other)]
    assert [s["machine"] for s in seen] == [0, 1] and seen[0]["split"] == seen[1]["split"]
    assert all(s["processes"] == 2 and s["machines"] == 2 for s in seen)

    # one run: each machine reports the same steps, the two together read exactly the one-machine run's batches
    steps = {name: [e for e in events(job) if e["type"] == "step"] for name, job in
             (("main", main), ("other", other), ("alone", alone))}
    assert [e["step"] for e in steps["main"]] == [e["step"] for e in steps["other"]] == list(range(1, 13))
    assert [e["loss"] for e in steps["main"]] == [e["loss"] for e in steps["other"]]
    full = logged(alone, "train.log.data")[0]["train"] // 16  # the steps before the first epoch's short batch
    assert full >= 3 and [e["tokens"] for e in steps["main"][:full]] == [e["tokens"] for e in steps["alone"][:full]]
    assert main["final_loss"] < main["first_loss"] * 0.8
    # the first epoch ends at different rows (batches of 8 per machine, of 16 alone), so later steps differ;
    # the end of the run does not: the held-out loss of the final weights, and the last steps' training loss
    final_val = {name: [e for e in events(job) if e["type"] == "eval"][-1]["val_loss"] for name, job in
                 (("main", main), ("alone", alone))}
    last = {name: sum(e["loss"] for e in steps[name][-3:]) / 3 for name in ("main", "alone")}
    print(f"held-out loss at the end, two machines {final_val['main']:.4f}, one {final_val['alone']:.4f}; "
          f"last three steps {last['main']:.4f}, {last['alone']:.4f}")
    assert abs(final_val["main"] - final_val["alone"]) < 0.02 * final_val["alone"]
    assert abs(last["main"] - last["alone"]) < 0.03 * last["alone"]

    # the main machine keeps the result; the other says where it is
    assert (Path(main["job_dir"]) / "adapter" / "adapter_model.safetensors").is_file()
    assert not (Path(other["job_dir"]) / "adapter").exists()
    assert not (Path(other["job_dir"]) / "checkpoints" / "index.json").exists()
    assert logged(other, "train.log.result_on_main") == [{"ip": "127.0.0.1", "step": 12}]


def test_a_plan_that_differs_stops_both_machines_and_names_the_setting(tmp_path):
    port = free_port()
    main_folder, _ = machine(tmp_path, "machine0", num_machines=2, main_process_port=port, join_timeout=240)
    other_folder, _ = machine(tmp_path, "machine1", num_machines=2, main_process_port=port, join_timeout=240,
                              learning_rate=0.001)
    started = time.time()
    runs = [start_train(main_folder), start_train(other_folder, "--machine-rank", "1", lang="zh")]
    main, other = (ended(proc) for proc in runs)
    print(f"two machines with different plans: {time.time() - started:.0f} s")
    for job in (main, other):
        assert job["state"] == "FAILED"
        assert json.loads(job["error"])["key"] == "train.error.machines_plan_differs"
        assert not [e for e in events(job) if e["type"] == "step"], "not a step is taken"
    assert "machine 1" in main["error_message"] and "learning_rate (0.005 ≠ 0.001)" in main["error_message"]
    assert "计划不一致" in other["error_message"] and "learning_rate (0.005 ≠ 0.001)" in other["error_message"]


def test_joining_a_main_machine_nobody_answers_for_fails_within_the_timeout(tmp_path):
    folder, _ = machine(tmp_path, "machine1", num_machines=2, main_process_port=free_port(), join_timeout=3)
    job = ended(start_train(folder, "--machine-rank", "1"))
    assert job["state"] == "FAILED"
    assert json.loads(job["error"])["key"] == "train.error.main_unreachable"
    assert "Could not reach the main machine at 127.0.0.1:" in job["error_message"]
    assert "within 3 s" in job["error_message"]
    took = job["finished_at"] - job["started_at"]  # the launch itself (loading torch), then the wait
    print(f"gave up after {took:.0f} s")
    assert took < 60, "the plan's join_timeout, not torch's default ten minutes"


def test_the_main_machine_says_when_nobody_joins_or_its_port_is_taken(tmp_path):
    import socket

    with socket.socket() as taken:  # another program on the main machine's port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy, _ = machine(tmp_path, "busy", num_machines=2, main_process_port=port, join_timeout=3)
        alone, _ = machine(tmp_path, "alone", num_machines=2, main_process_port=free_port(), join_timeout=3)
        runs = [start_train(busy), start_train(alone, lang="zh")]
        busy_job, alone_job = (ended(proc) for proc in runs)
    assert json.loads(busy_job["error"])["key"] == "train.error.main_port_in_use"
    assert f"Port {port} on this machine, the main one, is taken" in busy_job["error_message"]
    assert json.loads(alone_job["error"])["key"] == "train.error.machines_missing"
    assert "在 3 秒内只有 2 台机器中的 1 台" in alone_job["error_message"]
    for job in (busy_job, alone_job):
        assert job["state"] == "FAILED" and not [e for e in events(job) if e["type"] == "step"]


def test_a_rank_already_in_the_run_is_turned_away():
    """Two processes claiming one rank at the main machine's rendezvous store: the second is told, in both
    languages."""
    import datetime

    from torch.distributed import TCPStore

    from easytune.i18n import UserError
    from easytune.plan.schema import TrainingPlan
    from easytune.train.machines import claim_rank

    port = free_port()
    main = TCPStore("127.0.0.1", port, is_master=True, timeout=datetime.timedelta(seconds=5))  # the main machine's
    plan = TrainingPlan(num_machines=2, machine_rank=1, main_process_port=port, join_timeout=5)
    first, second = (TCPStore("127.0.0.1", port, is_master=False, timeout=datetime.timedelta(seconds=5))
                     for _ in range(2))  # two machines started as machine 1
    claim_rank(first, plan, rank=1)
    with pytest.raises(UserError) as taken:
        claim_rank(second, plan, rank=1)
    assert taken.value.key == "train.error.machine_rank_taken"
    assert f"Machine rank 1 is already in the run at 127.0.0.1:{port}" in taken.value.message("en")
    assert "机器编号 1 已经在" in taken.value.message("zh")
    claim_rank(second, plan, rank=0)  # another rank is free
    del main
