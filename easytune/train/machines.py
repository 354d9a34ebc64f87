"""What the machines of one run settle at start, before they join the process group: each process takes its rank
(a second machine started with a rank already in the run is turned away), then every process compares what its
machine's job was made from with what the others' were: the plan, the model, the data split, the device and the
number format. Each machine created its job in its own home, from its own copy of the plan and the data, so
nothing else guarantees that they agree; a difference is said on every machine, naming what differs, before a
step is taken (and before processes on unlike devices would pick unlike backends and wait on each other).

Both go through the rendezvous store on the main machine, whose address torchrun gives every process.
"""

from __future__ import annotations

import datetime
import json
import os

from easytune.i18n import UserError
from easytune.plan.schema import TrainingPlan, shared_settings
from easytune.train.ranks import Ranks


def settle(plan: TrainingPlan, job: dict, ranks: Ranks) -> None:
    """This process's rank taken, and the run's machines found to agree; else the UserError that says why."""
    from torch.distributed import TCPStore

    store = TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                     timeout=datetime.timedelta(seconds=plan.join_timeout))
    claim_rank(store, plan, ranks.rank)
    check_same_run(store, plan, job, ranks)


def claim_rank(store, plan: TrainingPlan, rank: int) -> None:
    """Take `rank` in the run: two processes with one rank would wait on each other for good."""
    if store.add(f"easytune/rank/{rank}", 1) > 1:  # atomic: of two claims, exactly one sees 1
        raise UserError("train.error.machine_rank_taken", machine=plan.machine_rank, last=plan.num_machines - 1,
                        ip=plan.main_process_ip, port=plan.main_process_port)


def check_same_run(store, plan: TrainingPlan, job: dict, ranks: Ranks) -> None:
    """Every process puts what its machine's job was made from in the store and compares every other's with the
    main machine's: the settings that must agree (schema.shared_settings), the model (its configuration and
    size), the split (the hashes of the rows trained on and held out), the device and the number format. The
    first difference is raised on every process alike."""
    mine = {"machine": plan.machine_rank, "plan": shared_settings(plan), "model": job.get("model_sha256"),
            "split": job.get("split_sha256"), "device": f"{job.get('device')} {job.get('precision')}"}
    store.set(f"easytune/run/{ranks.rank}", json.dumps(mine))
    everyone = [json.loads(store.get(f"easytune/run/{rank}")) for rank in range(ranks.world)]  # waits for each
    main = everyone[0]
    for other in everyone[1:]:
        names = sorted(set(main["plan"]) | set(other["plan"]))
        differ = [f"{name} ({main['plan'].get(name)} ≠ {other['plan'].get(name)})" for name in names
                  if main["plan"].get(name) != other["plan"].get(name)]
        if differ:
            raise UserError("train.error.machines_plan_differs", machine=other["machine"], settings=", ".join(differ))
        if other["device"] != main["device"]:
            raise UserError("train.error.machines_device_differs", machine=other["machine"], main=main["device"],
                            device=other["device"])
        if other["model"] != main["model"]:
            raise UserError("train.error.machines_model_differs", machine=other["machine"])
        if other["split"] != main["split"]:
            raise UserError("train.error.machines_data_differs", machine=other["machine"])
