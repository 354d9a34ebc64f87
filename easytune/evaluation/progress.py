"""How far a long evaluation is, and about how long it still takes: "42 % · about 1 min left".

The estimate is the time so far scaled by what is left (the work is counted in answer tokens, so a bucket
of long answers weighs more than one of short labels); it says nothing until a little work is done.
"""

from __future__ import annotations

import math
import time

from easytune.i18n import t

SETTLE_S = 3.0  # before this, or before 2 % is done, a rate is a guess


class Eta:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def text(self, done: float, total: float, lang: str) -> str:
        fraction = min(1.0, done / total) if total else 0.0
        pct = math.floor(100 * fraction)
        elapsed = time.monotonic() - self.started
        if fraction < 0.02 or elapsed < SETTLE_S or fraction >= 1.0:
            return t("evaluation.progress_pct", lang, pct=pct)
        left = elapsed * (1 - fraction) / fraction
        amount = (t("evaluation.left_min", lang, n=math.ceil(left / 60)) if left >= 90
                  else t("evaluation.left_s", lang, n=max(5, 5 * math.ceil(left / 5))))
        return t("evaluation.progress_eta", lang, pct=pct, left=amount)
