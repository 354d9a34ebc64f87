"""Start the web app with secure defaults: loopback only unless a password is set, a password worth the name,
nothing phoned home."""

from __future__ import annotations

import hmac
import os
import sys

from easytune.i18n import UserError, t
from easytune.offline import go_offline
from easytune.settings import LOOPBACK_HOSTS, Settings

MIN_PASSWORD_CHARS = 8  # the login is rate-limited, but a short password still falls to patient guessing


def check_bind(settings: Settings) -> None:
    """The rule for the app and the API server alike: a password, when given, is long enough; another address
    than loopback needs one."""
    if settings.password is not None and len(settings.password.strip()) < MIN_PASSWORD_CHARS:
        raise UserError("ui.error.password_too_short", min=MIN_PASSWORD_CHARS)
    if settings.host not in LOOPBACK_HOSTS and not settings.password:
        raise UserError("ui.error.password_required", host=settings.host)


# How often Gradio's queue looks for work while it has none (s). Its own default outside Windows is every
# millisecond, and every 10 ms for progress: 5 % of a core with nobody connected (1.55 CPU s in 30 s, AMD EPYC),
# time a training run on the same cores loses. An event now waits at most this long to start.
QUEUE_IDLE_S, PROGRESS_IDLE_S = 0.02, 0.1


def unhurried(demo):
    queue = getattr(demo, "_queue", None)  # (Gradio's own attributes: left alone where a version lacks them)
    if queue is not None and hasattr(queue, "sleep_when_free"):
        queue.sleep_when_free = QUEUE_IDLE_S
    if queue is not None and hasattr(queue, "progress_update_sleep_when_free"):
        queue.progress_update_sleep_when_free = PROGRESS_IDLE_S
    return demo


def serve(settings: Settings, demo=None) -> int:
    check_bind(settings)
    go_offline()  # before gradio is imported: no analytics, no hub calls
    # Gradio summarises every event's timing with pandas for its monitoring page, which is off here: never.
    os.environ["GRADIO_ANALYTICS_CACHE_FREQUENCY"] = str(2**62)
    from starlette.middleware import Middleware

    from easytune.ui.gradio_import import gradio_for_serving

    with gradio_for_serving():
        from easytune.ui.app import LAUNCH_OPTIONS, build_app
    from easytune.ui.login_gate import LoginGate
    from easytune.ui.page_language import PageLanguage

    demo = demo or build_app(settings)
    auth, middleware = None, [Middleware(PageLanguage, settings=settings)]
    if settings.password:
        def auth(_user: str, password: str) -> bool:
            return hmac.compare_digest(password.encode(), settings.password.encode())

        middleware.insert(0, Middleware(LoginGate, settings=settings))  # outermost: nothing passes unlogged

    print(t("ui.serving", settings.language, url=f"http://{settings.host}:{settings.port}"), file=sys.stderr)
    unhurried(demo.queue(default_concurrency_limit=4)).launch(
        server_name=settings.host, server_port=settings.port, auth=auth, share=False,
        max_file_size=f"{settings.max_upload_mb}mb", ssr_mode=False, mcp_server=False,
        enable_monitoring=False, quiet=True, footer_links=[], app_kwargs={"middleware": middleware},
        # What the app hands the browser (logs, plans, exports) is written there; nothing else is served.
        allowed_paths=[str(settings.folder("downloads")), str(settings.folder("plans"))], **LAUNCH_OPTIONS)
    return 0
