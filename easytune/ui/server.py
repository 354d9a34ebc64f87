"""Start the web app with secure defaults: loopback only unless a password is set, nothing phoned home."""

from __future__ import annotations

import hmac
import sys

from easytune.i18n import UserError, t
from easytune.offline import go_offline
from easytune.settings import LOOPBACK_HOSTS, Settings


def check_bind(settings: Settings) -> None:
    if settings.host not in LOOPBACK_HOSTS and not settings.password:
        raise UserError("ui.error.password_required", host=settings.host)


def serve(settings: Settings, demo=None) -> int:
    check_bind(settings)
    go_offline()  # before gradio is imported: no analytics, no hub calls
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
