"""Gradio's own words follow the app's language: the page reports the language the user chose in the app (or the
browser's, read as the app reads it) to Gradio's code, which picks its words from it when it mounts."""

import asyncio


def test_the_page_reports_the_chosen_language_else_the_browsers_as_the_app_reads_it(settings):
    from easytune.ui import state
    from easytune.ui.page_language import page_language

    assert page_language(settings, "en-GB,en;q=0.9") == "en"
    assert page_language(settings, "fr-FR,fr;q=0.9") == "zh", "the app's rule: any other language is Chinese"
    assert page_language(settings, "") == "zh"
    state.remember(settings, lang="en")
    assert page_language(settings, "zh-CN,zh;q=0.9") == "en", "the user's choice wins over the browser"


def test_the_script_comes_first_in_the_page_and_the_length_follows(settings):
    from easytune.ui import state
    from easytune.ui.page_language import PageLanguage

    page = b"<!doctype html><html><head><script>window.gradio_config = {};</script></head><body></body></html>"

    async def gradio(scope, receive, send):
        headers = [(b"content-type", b"text/html; charset=utf-8"), (b"content-length", b"%d" % len(page))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": page})

    def get(path: str, accept: bytes) -> tuple[dict, bytes]:
        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"accept-language", accept)]}
        asyncio.run(PageLanguage(gradio, settings)(scope, None, send))
        return dict(sent[0]["headers"]), b"".join(m.get("body", b"") for m in sent[1:])

    state.remember(settings, lang="zh")
    headers, body = get("/", b"en-US,en;q=0.9")
    assert body.index(b'"zh-CN"') < body.index(b"window.gradio_config"), "before Gradio's own code"
    assert int(headers[b"content-length"]) == len(body)
    assert get("/gradio_api/info", b"en-US")[1] == page, "only the page itself"
