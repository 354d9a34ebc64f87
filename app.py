"""`gradio app.py` works too: the Gradio convention of a module-level `demo`."""

import os

from easytune.ui.server import OFFLINE_ENV

os.environ.update(OFFLINE_ENV)

from easytune.ui.app import build_app  # noqa: E402  (after the offline environment is set)

demo = build_app()

if __name__ == "__main__":
    from easytune.settings import load_settings
    from easytune.ui.server import serve

    serve(load_settings(), demo)
