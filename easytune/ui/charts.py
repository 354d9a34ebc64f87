"""Plotly figures for the monitor (plotly is imported on first use, not at start-up)."""

from __future__ import annotations

from easytune.i18n import t


def smooth(values: list[float], weight: float = 0.8) -> list[float]:
    """Exponential moving average, the usual training-curve smoothing."""
    out, last = [], None
    for value in values:
        last = value if last is None else weight * last + (1 - weight) * value
        out.append(last)
    return out


def _raw_and_smoothed(fig, points: list[tuple[int, float]], raw_name: str, name: str, rgb: str) -> None:
    """A per-step curve as the loss chart draws it: faint raw points, a smoothed line through them."""
    steps, values = zip(*points)
    fig.add_scatter(x=steps, y=values, mode="markers", name=raw_name, marker={"size": 4, "color": f"rgba({rgb},0.35)"})
    fig.add_scatter(x=steps, y=smooth(list(values)), mode="lines", name=name, line={"color": f"rgb({rgb})", "width": 2})


def _per_eval(fig, points: list[tuple[int, float]], name: str, color: str, right_axis: bool = False) -> None:
    """A curve measured at each evaluation; on the right axis (dotted) for a figure of another unit."""
    steps, values = zip(*points)
    line = {"color": color, "width": 2, **({"dash": "dot"} if right_axis else {})}
    fig.add_scatter(x=steps, y=values, mode="lines+markers", name=name, line=line, yaxis="y2" if right_axis else "y")


def _style(fig, lang: str, y_title: str, y2_title: str | None = None):
    if y2_title:
        fig.update_layout(yaxis2={"title": y2_title, "overlaying": "y", "side": "right", "showgrid": False})
    fig.update_layout(template="plotly_dark", height=340, margin={"l": 40, "r": 10, "t": 30, "b": 40},
                      xaxis_title=t("ui.chart.step", lang), yaxis_title=y_title,
                      legend={"orientation": "h", "y": 1.1}, paper_bgcolor="#111827", plot_bgcolor="#111827")
    return fig


def loss_figure(series: dict[str, list[tuple[int, float]]], lang: str, active: bool = True):
    """The loss curves, validation loss and forgetting score; before the first step, a sentence instead: what
    will be drawn (`active`: the job is still to train) or that nothing was (it ended first)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if series.get("loss"):
        _raw_and_smoothed(fig, series["loss"], t("ui.chart.loss_raw", lang), t("ui.chart.loss", lang), "34,211,238")
    if series.get("val_loss"):
        _per_eval(fig, series["val_loss"], t("ui.chart.val_loss", lang), "#f59e0b")
    cf = series.get("cf_pct")
    if cf:
        _per_eval(fig, cf, t("ui.chart.cf", lang), "#f472b6", right_axis=True)
    _style(fig, lang, t("ui.chart.loss_axis", lang), t("ui.chart.cf_axis", lang) if cf else None)
    if not fig.data:  # a sentence, not empty axes
        fig.add_annotation(text=t("ui.chart.waiting" if active else "ui.chart.no_steps", lang), showarrow=False,
                           xref="paper", yref="paper", x=0.5, y=0.5, font={"size": 15, "color": "#9ca3af"})
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    return fig


def reward_figure(series: dict[str, list[tuple[int, float]]], lang: str):
    """Preference training (DPO): the reward margin (chosen answer's reward minus the rejected one's) per
    step and on the held-out pairs, with the share of held-out pairs ranked right on the right axis.
    None for a job without reward figures."""
    import plotly.graph_objects as go

    if not series.get("reward_margin") and not series.get("val_reward_margin"):
        return None
    fig = go.Figure()
    if series.get("reward_margin"):
        _raw_and_smoothed(fig, series["reward_margin"], t("ui.chart.reward_margin_raw", lang),
                          t("ui.chart.reward_margin", lang), "52,211,153")
    if series.get("val_reward_margin"):
        _per_eval(fig, series["val_reward_margin"], t("ui.chart.val_reward_margin", lang), "#f59e0b")
    accuracy = series.get("val_reward_accuracy")
    if accuracy:
        _per_eval(fig, [(step, value * 100) for step, value in accuracy], t("ui.chart.reward_accuracy", lang),
                  "#a78bfa", right_axis=True)
    fig.add_hline(y=0, line={"color": "#6b7280", "width": 1, "dash": "dash"})  # above zero: chosen is preferred
    return _style(fig, lang, t("ui.chart.reward_axis", lang), t("ui.chart.accuracy_axis", lang) if accuracy else None)


def token_histogram(result: dict, lang: str):
    """How long the examples are in the model's tokens, with the model's context as a line."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Histogram(x=result["lengths"], nbinsx=40, marker={"color": "#22d3ee"},
                                 name=t("ui.chart.rows", lang)))
    if result["context"]:
        fig.add_vline(x=result["context"], line={"color": "#f472b6", "dash": "dash"},
                      annotation_text=t("ui.chart.context", lang), annotation_font_color="#f472b6")
    fig.update_layout(template="plotly_dark", height=260, margin={"l": 40, "r": 10, "t": 30, "b": 40},
                      xaxis_title=t("ui.chart.tokens", lang), yaxis_title=t("ui.chart.rows", lang),
                      paper_bgcolor="#111827", plot_bgcolor="#111827", showlegend=False)
    return fig


SWEEP_COLOURS = {"COMPLETE": "#22d3ee", "INFEASIBLE": "#f472b6", "PRUNED": "#6b7280"}


def sweep_figure(shown: dict, lang: str):
    """A sweep's metric per trial: the feasible ones, those that forget too much, those stopped early (at the
    validation loss they were stopped with, where that is the metric), and the best so far as a line."""
    import plotly.graph_objects as go

    from easytune.sweep.driver import values_text

    as_pct = shown["metric"] == "fact_accuracy"
    shown_value = (lambda v: v * 100) if as_pct else (lambda v: v)

    def plotted(row: dict) -> float | None:  # a trial stopped early has no metric: its last validation loss
        return row["metric"] if row["metric"] is not None or as_pct else row["val_loss"]

    fig = go.Figure()
    for state, colour in SWEEP_COLOURS.items():
        points = [(r, plotted(r)) for r in shown["rows"] if r["state"] == state and plotted(r) is not None]
        if points:
            fig.add_scatter(x=[r["number"] + 1 for r, _ in points], y=[shown_value(v) for _, v in points],
                            mode="markers", name=t(f"ui.sweep.legend.{state}", lang),
                            text=[values_text(r["params"]) for r, _ in points], hovertemplate="%{text}<br>%{y}",
                            marker={"size": 11, "color": colour, "symbol": "x" if state == "PRUNED" else "circle"})
    best, line = None, []
    better = (lambda a, b: a > b) if shown["higher_is_better"] else (lambda a, b: a < b)
    for row in shown["rows"]:
        if row["state"] == "COMPLETE" and row["metric"] is not None and (best is None or better(row["metric"], best)):
            best = row["metric"]
        if best is not None:
            line.append((row["number"] + 1, shown_value(best)))
    if line:
        fig.add_scatter(x=[x for x, _ in line], y=[y for _, y in line], mode="lines",
                        name=t("ui.chart.sweep_best", lang), line={"color": "#f59e0b", "width": 2, "shape": "hv"})
    fig.update_layout(template="plotly_dark", height=300, margin={"l": 40, "r": 10, "t": 30, "b": 40},
                      xaxis_title=t("ui.chart.trial", lang), yaxis_title=t(f"sweep.metric.{shown['metric']}", lang),
                      xaxis={"dtick": 1}, legend={"orientation": "h", "y": 1.15}, paper_bgcolor="#111827",
                      plot_bgcolor="#111827")
    return fig
