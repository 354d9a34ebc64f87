"""The monitor's loss chart: before a job's first step it says what will be drawn, in the user's language,
instead of showing empty axes (or, for a job that ended first, that nothing was); from the first step on, the
curves alone."""

from __future__ import annotations

import pytest

from easytune.i18n import t
from easytune.ui import charts


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_job_still_preparing_gets_a_sentence_not_empty_axes(lang):
    figure = charts.loss_figure({}, lang)
    assert [note.text for note in figure.layout.annotations] == [t("ui.chart.waiting", lang)]
    assert figure.layout.xaxis.visible is False and figure.layout.yaxis.visible is False and not figure.data


def test_a_job_that_ended_before_its_first_step_says_so():
    figure = charts.loss_figure({}, "zh", active=False)
    assert [note.text for note in figure.layout.annotations] == [t("ui.chart.no_steps", "zh")]


def test_the_first_step_replaces_the_sentence_with_the_curve():
    figure = charts.loss_figure({"loss": [(1, 4.2)], "val_loss": [(0, 4.5)]}, "en")
    assert not figure.layout.annotations and figure.layout.xaxis.visible is not False
    assert {trace.name for trace in figure.data} >= {t("ui.chart.loss", "en"), t("ui.chart.val_loss", "en")}
