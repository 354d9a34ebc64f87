"""Password mode's front door: until a browser has logged in, only our small login page and the login form
get through to the app; failed logins from one address wait longer and longer.

Gradio's own login still decides whether a password is right (and its routes still check the cookie), but
its unauthenticated page embeds the whole API description — every dataset and job id offered in a menu —
and some of its routes answer anyone. This ASGI middleware sits in front of all of them.
"""

from __future__ import annotations

import html
import json
import math
import time

from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, JSONResponse

from easytune.i18n import normalize_lang, t
from easytune.settings import Settings

LOGIN_PATHS = {"/login", "/login/"}  # gradio's form handler, which sets its session cookie
# gradio's launch() calls this itself, without a cookie, to start the queue; it answers only true or false
OPEN_PATHS = {"/gradio_api/startup-events"}
FREE_FAILURES = 5  # typos a person makes before any wait
FIRST_WAIT_S = 1.0  # then each failure doubles the wait, up to
MAX_WAIT_S = 15 * 60.0  # so someone locked out by another's guessing gets in within a quarter of an hour
FORGET_AFTER_S = 60 * 60.0  # an address quiet this long starts again from nothing


class LoginThrottle:
    """Failed logins per client address, and how long each address must wait before it may try again."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.failures: dict[str, tuple[int, float]] = {}  # address -> (failures, when the last one was)

    def wait_left(self, address: str) -> float:
        count, last = self.failures.get(address, (0, 0.0))
        if count < FREE_FAILURES:
            return 0.0
        wait = min(FIRST_WAIT_S * 2 ** (count - FREE_FAILURES), MAX_WAIT_S)
        return max(0.0, last + wait - self.clock())

    def failed(self, address: str) -> None:
        now = self.clock()
        self.failures = {a: f for a, f in self.failures.items() if now - f[1] < FORGET_AFTER_S}
        count, _ = self.failures.get(address, (0, 0.0))
        self.failures[address] = (count + 1, now)

    def succeeded(self, address: str) -> None:
        self.failures.pop(address, None)


class LoginGate:
    """ASGI middleware for gradio's app when a password is set."""

    def __init__(self, app, settings: Settings, throttle: LoginThrottle | None = None):
        self.app = app
        self.settings = settings
        self.throttle = throttle or LoginThrottle()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS or logged_in(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        lang = self.language(scope)
        path, method = scope["path"], scope["method"]
        if path in LOGIN_PATHS and method == "POST":
            return await self.try_login(scope, receive, send, lang)
        if path == "/" and method in ("GET", "HEAD"):
            response = HTMLResponse(login_page(lang))
        else:
            response = JSONResponse({"detail": t("ui.login.required", lang)}, status_code=401)
        await response(scope, receive, send)

    async def try_login(self, scope, receive, send, lang: str):
        address = scope["client"][0] if scope.get("client") else ""
        wait = self.throttle.wait_left(address)
        if wait > 0:
            seconds = math.ceil(wait)
            response = JSONResponse({"detail": t("ui.login.too_many", lang, seconds=seconds)}, status_code=429,
                                    headers={"Retry-After": str(seconds)})
            return await response(scope, receive, send)
        # Counted before the password is checked, so attempts sent all at once cannot slip past the wait
        # together; the right password then clears the count.
        self.throttle.failed(address)

        async def watch(message):
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.throttle.succeeded(address)
            await send(message)

        await self.app(scope, receive, watch)

    def language(self, scope) -> str:
        """The app's language for this browser: the saved choice, else what the browser asks for."""
        from easytune.ui import state

        saved = state.recall(self.settings).get("lang")
        asked = HTTPConnection(scope).headers.get("accept-language")
        return normalize_lang(saved or asked or self.settings.language)


def logged_in(scope) -> bool:
    """Whether the request carries a session cookie gradio's login handed out (gradio's own check)."""
    app = scope["app"]
    cookies = HTTPConnection(scope).cookies
    token = cookies.get(f"access-token-{app.cookie_id}") or cookies.get(f"access-token-unsecure-{app.cookie_id}")
    return token is not None and token in app.tokens


def login_page(lang: str) -> str:
    """A page that knows nothing but how to ask for the password; on success it reloads into the app."""
    text = {part: html.escape(t(f"ui.login.{part}", lang)) for part in ("title", "password", "submit")}
    wrong = json.dumps(t("ui.login.wrong", lang), ensure_ascii=False)
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>EasyTune</title>
<style>
body {{ background: #0b0f17; color: #f3f4f6; font-family: Inter, "PingFang SC", "Microsoft YaHei", system-ui,
       sans-serif; display: flex; justify-content: center; padding-top: 15vh; }}
form {{ background: #111827; border: 1px solid #374151; border-radius: 12px; padding: 1.5em 2em; width: 20em; }}
input {{ width: 100%; box-sizing: border-box; margin: .5em 0 1em; padding: .5em; border-radius: 6px;
        border: 1px solid #374151; background: #0b0f17; color: inherit; font-size: 1em; }}
button {{ width: 100%; padding: .6em; border: 0; border-radius: 6px; background: #06b6d4; color: #041014;
         font-weight: 600; font-size: 1em; cursor: pointer; }}
#message {{ color: #fca5a5; font-weight: 600; min-height: 1.5em; margin-top: .8em; }}
</style></head>
<body><form id="login">
<h2>{text["title"]}</h2>
<label for="password">{text["password"]}</label>
<input id="password" name="password" type="password" autocomplete="current-password" autofocus required>
<button type="submit">{text["submit"]}</button>
<div id="message" role="alert"></div>
</form>
<script>
document.getElementById("login").addEventListener("submit", async (event) => {{
  event.preventDefault();
  const message = document.getElementById("message");
  const body = new URLSearchParams({{username: "easytune", password: document.getElementById("password").value}});
  const response = await fetch("login", {{method: "POST", body}});
  if (response.ok) {{ location.reload(); return; }}
  message.textContent = response.status === 429 ? (await response.json()).detail : {wrong};
}});
</script></body></html>
"""
