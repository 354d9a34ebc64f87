"""Start the web app with secure defaults: loopback only unless a password is set, nothing phoned home."""

from __future__ import annotations

import hmac
import os
import sys

from easytune.i18n import UserError, t
from easytune.settings import LOOPBACK_HOSTS, Settings

# Before gradio is imported: no analytics, no hub calls, no telemetry.
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DO_NOT_TRACK": "1", "GRADIO_TELEMETRY_ENABLED": "False"}


def check_bind(settings: Settings) -> None:
    if settings.host not in LOOPBACK_HOSTS and not settings.password:
        raise UserError("ui.error.password_required", host=settings.host)


def serve(settings: Settings, demo=None) -> int:
    check_bind(settings)
    from easytune.models.sources import keep_offline_choice

    keep_offline_choice()  # hub downloads the user starts follow the user's own HF_HUB_OFFLINE, not the app's
    os.environ.update(OFFLINE_ENV)
    from easytune.ui.app import LAUNCH_OPTIONS, build_app

    demo = demo or build_app(settings)
    auth = None
    if settings.password:
        def auth(_user: str, password: str) -> bool:
            return hmac.compare_digest(password.encode(), settings.password.encode())

    print(t("ui.serving", settings.language, url=f"http://{settings.host}:{settings.port}"), file=sys.stderr)
    demo.queue(default_concurrency_limit=4).launch(
        server_name=settings.host, server_port=settings.port, auth=auth, share=False,
        max_file_size=f"{settings.max_upload_mb}mb", ssr_mode=False, mcp_server=False,
        enable_monitoring=False, quiet=True, footer_links=[], **LAUNCH_OPTIONS)
    return 0
