"""Jobs: everything about a training run that happens outside the training subprocess. Runs in the app (or
CLI) process and never imports the training stack; the worker (easytune.train) imports only the protocol
modules below, which import nothing heavy.

    folder      a job folder's layout, and the record resolved once when the job is created
    objective   which objective the data calls for (decided at creation)
    events      the event protocol from the worker, and the control files to it
    guard       when the forgetting guard pauses a run
    spawn       starting jobs: one on the device at a time, the next when it is free; the worker's command
    machines    this machine's part of a run over several machines: accelerate's arguments, the network interface
    partial     half-written files, swept once no worker can be writing them
    deliver     a checkpoint made a stopped job's result
    create      creating a job; rows: reading jobs back
    follow      the worker's events into SQLite, its end settled, crash recovery
    control     stop, pause, resume, finish, restart, clone, delete
    lineage     version N+1 of a finished job's model, and the versions of one lineage
    replay      earlier versions' rows mixed into a new version's data
    question_variants  copies of the questions with words left out, written beside the user's rows
    status      time left, warnings, log lines; actions: what a job offers in its state

States: PENDING → PREPARING → RUNNING → COMPLETED | FAILED | STOPPED | PAUSED, and INTERRUPTED for a
run cut short from outside the training: its worker ended without saying how (killed, perhaps by the
system for lack of memory; or gone while nobody was watching, found on the next start), or it failed
for a cause the user can remove (a full disk), while it has a checkpoint to continue from. A worker
that ended without a word and left nothing to continue from is FAILED, with its signal or exit code,
unless nobody saw how it ended. A job is never left active once its worker is gone, and what its
worker left half-written is removed then. A job is PAUSED by the user or by the forgetting guard.
PAUSED, STOPPED and INTERRUPTED jobs resume from their latest checkpoint as the same job, back
through PENDING, or finish with their best checkpoint as the result.
"""

import importlib

# The service API by the module that owns each name, loaded on first use: the worker imports the protocol
# modules (folder, events, guard...) and must not pull in the service, and easytune.datasets, which the
# service uses, reads the protocol's states without importing the service back.
_OWNERS = {
    "actions": ("SUGGESTIONS", "available_actions", "perform", "suggested_changes"),
    "control": ("RESUME_SETTINGS", "clone_job", "delete_job", "finish_job", "pause_job", "restart_job", "resume_job",
                "stop_job"),
    "create": ("create_job", "launch"),
    "follow": ("Monitor", "sync_active", "sync_job"),
    "spawn": ("start_job", "start_next"),
    "rows": ("get_job", "list_jobs", "logged_events", "logged_params", "metrics", "queue", "timed_metrics"),
    "status": ("event_text", "held_out_trusted", "job_plan", "time_left", "warnings"),
    "lineage": ("ADAPTER_SHAPE", "NEW_TASK_DEFAULTS", "best_line", "best_versions", "continual_advice",
                "earlier_training_files", "next_version", "version_label", "versions"),
}
_OWNER_OF = {name: module for module, names in _OWNERS.items() for name in names}
__all__ = sorted(_OWNER_OF)


def __getattr__(name: str):
    if name not in _OWNER_OF:
        raise AttributeError(f"module 'easytune.jobs' has no attribute {name!r}")
    return getattr(importlib.import_module(f"easytune.jobs.{_OWNER_OF[name]}"), name)
