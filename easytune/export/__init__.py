"""Export a finished job: merged safetensors, LoRA adapter package, OpenVINO INT8 / INT4 — each checked
against the trained model before it is offered, each with a model card.

service.py  export_job / list_exports / remove_export and the `exports` table
build.py    the writer of each format          verify.py  does the export answer like the job model?
card.py     the model card (README.md)
"""

from easytune.export.service import FORMATS, export_job, list_exports, remove_export

__all__ = ["FORMATS", "export_job", "list_exports", "remove_export"]
