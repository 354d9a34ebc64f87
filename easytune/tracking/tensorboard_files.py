"""TensorBoard event files: one file per run folder, records appended as they come.

TensorBoard reads every file whose name holds `tfevents` in a run folder, in name order, and follows a
file as it grows. A run here is one job: its folder holds one file EasyTune writes (`*.easytune`), which
the live writer appends to while the job runs and an export writes anew. The records are TensorBoard's
own (the `tensorboard` package's protocol buffers and record framing), so any reader of event files
reads them; the package is optional and imported only when a file is written.
"""

from __future__ import annotations

import time
from pathlib import Path

from easytune.i18n import UserError

SUFFIX = ".easytune"  # the files EasyTune wrote: the only ones an export replaces


def require_tensorboard() -> None:
    """The bilingual message naming the package, before anything is written or a job is created."""
    try:
        import tensorboard.compat.proto.event_pb2  # noqa: F401
    except ImportError:
        raise UserError("tracking.error.no_tensorboard") from None


def event_files(run_dir: Path) -> list[Path]:
    return sorted(Path(run_dir).glob(f"events.out.tfevents.*{SUFFIX}"))


class EventFile:
    """Appends TensorBoard records to the run folder's EasyTune event file, creating it (with the header
    every event file starts with) where there is none. `new` says it was created, so the caller writes
    what a run states once (its settings)."""

    def __init__(self, run_dir: Path, fresh: bool = False):
        require_tensorboard()
        from tensorboard.compat.proto import event_pb2
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event_pb2 = event_pb2
        run_dir = Path(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        existing = event_files(run_dir)
        if fresh:  # an export replaces what an earlier one (or the live writer) left
            for path in existing:
                path.unlink()
            existing = []
        self.new = not existing
        self.path = existing[-1] if existing else run_dir / f"events.out.tfevents.{int(time.time()):010d}{SUFFIX}"
        self._writer = RecordWriter(self.path.open("ab"))
        if self.new:
            self._write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        self._writer.write(event.SerializeToString())

    def scalar(self, tag: str, value: float, step: int, wall_time: float) -> None:
        from tensorboard.compat.proto import summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        self._write(self._event_pb2.Event(wall_time=wall_time, step=step, summary=summary))

    def text(self, tag: str, text: str, step: int, wall_time: float) -> None:
        from tensorboard.plugins.text.summary_v2 import text_pb

        self._write(self._event_pb2.Event(wall_time=wall_time, step=step, summary=text_pb(tag, text)))

    def hparams(self, values: dict, trial: str, wall_time: float) -> None:
        """The run's settings for TensorBoard's HParams tab, where runs are compared setting by setting."""
        from tensorboard.plugins.hparams.summary_v2 import hparams_pb

        summary = hparams_pb(values, trial_id=trial, start_time_secs=wall_time)
        self._write(self._event_pb2.Event(wall_time=wall_time, step=0, summary=summary))

    def restart(self, step: int, wall_time: float) -> None:
        """A run continues from a checkpoint: TensorBoard drops the points it recorded from `step` on, which
        the resumed worker measures again (a SessionLog START, as a restarted TensorFlow run writes)."""
        log = self._event_pb2.SessionLog(status=self._event_pb2.SessionLog.START)
        self._write(self._event_pb2.Event(wall_time=wall_time, step=step, session_log=log))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> EventFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
