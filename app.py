"""`gradio app.py` works too: the Gradio convention of a module-level `demo`."""

from easytune.offline import go_offline

go_offline()

from easytune.ui.app import build_app  # noqa: E402  (after the offline environment is set)

demo = build_app()

if __name__ == "__main__":
    from easytune.settings import load_settings
    from easytune.ui.server import serve

    serve(load_settings(), demo)
