"""Data import: detect a file's format, encoding and shape, normalise rows, check quality, split.

Nothing here imports torch, transformers, datasets or gradio; Excel and Parquet support is loaded only
when such a file is opened.
"""

from easytune.data.ingest import ImportReport, NoUsableRows, content_hash, describe, import_file, preview

__all__ = ["ImportReport", "NoUsableRows", "content_hash", "describe", "import_file", "preview"]
