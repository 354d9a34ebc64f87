"""`python -m easytune.train.launch ACCELERATE-LAUNCH-ARGUMENTS…`: accelerate launch itself (its own parser and
launch command), for a run over several machines, saying in the job's events why a launch failed before any
worker started: nothing answers at the main machine's address, the other machines did not all join, or the
main machine's port is taken. Those failures happen in torchrun's rendezvous, where no worker exists to report
them; whatever happens once the workers run, they report themselves.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from easytune.jobs.events import EventWriter
from easytune.jobs.folder import JobFolder


def rendezvous_failure(exc: BaseException, plan) -> tuple[str, dict] | None:
    """(message key, params) for a launch that failed before its workers started; None for any other error."""
    from torch.distributed import DistNetworkError, DistStoreError

    where = {"ip": plan.main_process_ip, "port": plan.main_process_port, "timeout": plan.join_timeout}
    main = plan.machine_rank == 0
    if isinstance(exc, ConnectionError) and main:  # accelerate's own check that the port is free
        return "train.error.main_port_in_use", where
    if isinstance(exc, DistStoreError) and main:  # "Timed out after N seconds waiting for clients. 1/2 clients joined."
        joined = re.search(r"(\d+)/(\d+) clients joined", str(exc))
        return "train.error.machines_missing", {**where, "joined": joined.group(1) if joined else "?",
                                                "machines": plan.num_machines}
    if isinstance(exc, DistNetworkError) and main:  # the store could not listen on the port
        return "train.error.main_port_in_use", where
    if isinstance(exc, (DistNetworkError, DistStoreError)):
        return "train.error.main_unreachable", where
    return None


def main(argv: list[str]) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser

    args = launch_command_parser().parse_args(argv)
    folder = JobFolder(Path(args.training_script_args[0]))
    plan = folder.plan()
    reported = folder.events_file.stat().st_size if folder.events_file.exists() else 0
    try:
        launch_command(args)
    except Exception as exc:  # noqa: BLE001 — sorted below: only a launch that reached no worker is said here
        failure = rendezvous_failure(exc, plan)
        started = folder.events_file.exists() and folder.events_file.stat().st_size > reported
        if failure is None or started:
            raise
        key, params = failure
        print(f"easytune: {exc}", file=sys.stderr)  # torch's own words, for the log
        events = EventWriter(folder.path)
        events.emit("error", code=key, params=params, detail=str(exc)[:2000])
        events.state("FAILED", reason=key, **params)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
