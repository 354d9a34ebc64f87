"""`gradio app.py` works too: the Gradio convention of a module-level `demo`."""

from easytune.deferred_imports import leave_out_unused, quiet_library_notices
from easytune.offline import go_offline

go_offline()
leave_out_unused()  # the app's process is EasyTune's own, started by a file rather than the `easytune` command
quiet_library_notices()

from easytune.ui.app import build_app  # noqa: E402  (after the offline environment is set)

demo = build_app()

if __name__ == "__main__":
    from easytune.settings import load_settings
    from easytune.ui.server import serve

    serve(load_settings(), demo)
