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


def loss_figure(series: dict[str, list[tuple[int, float]]], lang: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    loss = series.get("loss", [])
    if loss:
        steps, values = zip(*loss)
        fig.add_scatter(x=steps, y=values, mode="markers", name=t("ui.chart.loss_raw", lang),
                        marker={"size": 4, "color": "rgba(34,211,238,0.35)"})
        fig.add_scatter(x=steps, y=smooth(list(values)), mode="lines", name=t("ui.chart.loss", lang),
                        line={"color": "#22d3ee", "width": 2})
    if series.get("val_loss"):
        steps, values = zip(*series["val_loss"])
        fig.add_scatter(x=steps, y=values, mode="lines+markers", name=t("ui.chart.val_loss", lang),
                        line={"color": "#f59e0b", "width": 2})
    if series.get("cf_pct"):
        steps, values = zip(*series["cf_pct"])
        fig.add_scatter(x=steps, y=values, mode="lines+markers", name=t("ui.chart.cf", lang), yaxis="y2",
                        line={"color": "#f472b6", "width": 2, "dash": "dot"})
        fig.update_layout(yaxis2={"title": t("ui.chart.cf_axis", lang), "overlaying": "y", "side": "right",
                                  "showgrid": False})
    fig.update_layout(template="plotly_dark", height=340, margin={"l": 40, "r": 10, "t": 30, "b": 40},
                      xaxis_title=t("ui.chart.step", lang), yaxis_title=t("ui.chart.loss_axis", lang),
                      legend={"orientation": "h", "y": 1.1}, paper_bgcolor="#111827", plot_bgcolor="#111827")
    return fig


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
