"""The versions view (Jobs page, step ④): rows, the best verdict and the chart from what jobs.versions() lists,
in the user's words in both languages."""

import re

import pytest

from easytune import jobs
from easytune.i18n import t
from easytune.jobs import best_line
from easytune.ui.versions import HEADERS, version_rows, versions_figure, versions_view


def bucket(facts: float) -> dict:
    return {"base": {"facts": 0.1, "facts_judged": 10}, "tuned": {"facts": facts, "facts_judged": 10}, "rows": 10}


def version(n: int, state: str, verdict=None, cf=None, seen=None, unseen=None) -> dict:
    buckets = {name: bucket(value) for name, value in (("seen", seen), ("unseen", unseen)) if value is not None}
    return {"id": f"job{n}", "name": f"shop · v{n}", "version": n, "previous": f"job{n - 1}" if n > 1 else None,
            "state": state, "dataset": "demo:shop_faq_en" if n == 1 else "feedback-job1", "verdict": verdict,
            "cf_pct": cf, "buckets": buckets}


LISTED = [version(1, "COMPLETED", "no_gain", cf=2.0, seen=0.2, unseen=0.1),
          version(2, "COMPLETED", "improved", cf=4.0, seen=0.8, unseen=0.5),
          version(3, "RUNNING")]  # not evaluated yet


def test_rows_in_english():
    rows = version_rows(LISTED, "job2", "en")
    assert rows == [["v1", "shop · v1", "Completed", "demo:shop_faq_en", "no gain", "20%", "10%", "2.0%"],
                    ["v2 · this job", "shop · v2", "Completed", "feedback-job1", "improved", "80%", "50%", "4.0%"],
                    ["v3", "shop · v3", "Training", "feedback-job1", "—", "—", "—", "—"]]
    assert best_line(LISTED, "en") == "Best verdict so far: **improved**, v2."


def test_rows_in_chinese_say_nothing_in_english():
    rows = version_rows(LISTED, "job2", "zh")
    assert [row[0] for row in rows] == ["第 1 版", "第 2 版 · 当前任务", "第 3 版"]
    assert [row[4] for row in rows] == [t("ui.eval.verdict.no_gain", "zh"), t("ui.eval.verdict.improved", "zh"), "—"]
    for row in rows:
        words = [cell for i, cell in enumerate(row) if i not in (1, 3)]  # the job's and the data's own names aside
        assert not any(re.search(r"[A-Za-z]", cell) for cell in words), row
    headers = [t(key, "zh") for key in HEADERS]
    assert not any(re.search(r"[A-Za-z]|ui\.", text) for text in headers), headers
    best = best_line(LISTED, "zh")
    assert "第 2 版" in best and t("ui.eval.verdict.improved", "zh") in best and not re.search(r"[A-Za-z]", best)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_best_line_names_ties_and_never_recommends_a_bad_version(lang):
    tied = [version(1, "COMPLETED", "mixed"), version(2, "COMPLETED", "mixed"), version(3, "COMPLETED", "harmful")]
    assert best_line(tied, lang) == t("ui.versions.best", lang, verdict=t("ui.eval.verdict.mixed", lang),
                                      versions=("、" if lang == "zh" else ", ").join(
                                          t("ui.versions.version", lang, n=n) for n in (1, 2)))
    bad = [version(1, "COMPLETED", "no_gain"), version(2, "COMPLETED", "harmful")]
    assert best_line(bad, lang) == t("ui.versions.none_better", lang)
    assert best_line([version(1, "COMPLETED"), version(2, "RUNNING")], lang) == t("ui.versions.none_evaluated", lang)


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_chart_compares_measured_versions_under_its_own_title(lang):
    fig = versions_figure(LISTED, lang)
    assert fig.layout.title.text == t("ui.versions.chart", lang)
    assert [trace.name for trace in fig.data] == [t("ui.eval.bucket.seen", lang), t("ui.eval.bucket.unseen", lang),
                                                  t("ui.chart.cf", lang)]
    assert list(fig.data[0].y) == [20, 80, None]
    assert versions_figure([LISTED[0], LISTED[2]], lang) is None  # one measured version: nothing to compare


def test_a_model_with_one_version_shows_no_versions(settings, monkeypatch):
    monkeypatch.setattr(jobs, "versions", lambda settings, job_id: LISTED[:1])
    assert versions_view(settings, "job1", "en") is None
    assert versions_view(settings, None, "en") is None
    monkeypatch.setattr(jobs, "versions", lambda settings, job_id: LISTED)
    view = versions_view(settings, "job3", "zh")
    assert view["rows"][2][0] == "第 3 版 · 当前任务" and view["figure"] is not None
