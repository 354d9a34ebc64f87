"""Gradio's own words (a file drop zone, a table's menu, an error's title) in the app's language, not the browser's.

Gradio's page picks its language once, from `navigator.language`, when it mounts. This ASGI middleware puts a
script at the top of the page's <head>, before Gradio's code, that makes the browser report the app's language:
the one the user chose, else the browser's own as the app reads it (i18n.normalize_lang: a French browser gets
the Chinese app, and now Chinese drop zones too). A language switch relabels the app's own words at once;
Gradio's follow at the next load of the page. The page's pace (page_pace.py) goes in with it: it too must run
before Gradio's code, which keeps its own reference to the browser's frame function.
"""

from __future__ import annotations

import json

from easytune.i18n import normalize_lang
from easytune.settings import Settings
from easytune.ui import page_pace, state

BROWSER_LOCALE = {"zh": "zh-CN", "en": "en"}  # Gradio's names of our languages
PAGE_PATHS = {"/", "/index.html"}
SCRIPT = ("<script>(() => {{ const chosen = {locale};"
          " Object.defineProperty(Navigator.prototype, 'language', {{ get: () => chosen }});"
          " Object.defineProperty(Navigator.prototype, 'languages', {{ get: () => [chosen] }}); }})();</script>")


def page_language(settings: Settings, accept_language: str) -> str:
    """The user's choice, else the browser's first language as the app reads it on its first load."""
    return state.recall(settings).get("lang") or normalize_lang(accept_language.split(",")[0].split(";")[0])


def page_script(lang: str) -> bytes:
    """The script that makes the page report `lang`."""
    return SCRIPT.format(locale=json.dumps(BROWSER_LOCALE[normalize_lang(lang)])).encode()


def with_script(page: bytes, script: bytes) -> bytes:
    """`page` with `script` first in its <head> (unchanged when it has none)."""
    head = page.find(b"<head>")
    if head < 0:
        return page
    at = head + len(b"<head>")
    return page[:at] + script + page[at:]


class PageLanguage:
    """ASGI middleware: the app's page, with the chosen language's script in its head."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or scope["path"] not in PAGE_PATHS:
            return await self.app(scope, receive, send)
        accept = dict(scope["headers"]).get(b"accept-language", b"").decode("latin-1")
        script = page_script(page_language(self.settings, accept)) + page_pace.SCRIPT.encode()
        start, body = None, []

        async def held(message):  # the page is small: hold it whole, then send it with the script in
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return None
            if message["type"] != "http.response.body":
                return await send(message)
            body.append(message.get("body", b""))
            if message.get("more_body"):
                return None
            headers = dict(start["headers"])
            page = b"".join(body)
            if headers.get(b"content-type", b"").startswith(b"text/html"):
                page = with_script(page, script)
            start["headers"] = [(k, v) for k, v in start["headers"] if k != b"content-length"]
            start["headers"].append((b"content-length", str(len(page)).encode()))
            await send(start)
            return await send({"type": "http.response.body", "body": page})

        return await self.app(scope, receive, held)
