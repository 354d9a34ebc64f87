"""The OpenVINO stack (openvino, openvino-tokenizers, nncf, optimum-intel), imported only through here so
that its usage reports are declined before any of it loads. Importing this module loads the stack.

nncf (which optimum-intel imports) and OpenVINO's model converter send usage statistics to Google
Analytics unless a consent file in ~/intel says no; nncf asks once, when it is imported. The
openvino-telemetry package they share reads no setting of its own from the environment (only the
markers of a CI server), so the answer is given in this process: every consent check says "declined".
Then nothing is sent, no name is looked up and nothing is written to ~/intel. The processes that
load the stack are EasyTune's own, and they all come here.
"""

from __future__ import annotations

import logging


def decline_usage_reports() -> None:
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        return  # without it nothing reports
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED


decline_usage_reports()

# After the decline above: that order is the point of this module.
import nncf  # noqa: E402
import openvino as ov  # noqa: E402
from openvino_tokenizers import convert_tokenizer  # noqa: E402 — also registers its operations with OpenVINO
from optimum.intel import OVModelForCausalLM, OVWeightQuantizationConfig  # noqa: E402


class _HubCacheNoise(logging.Filter):
    """Offline (as EasyTune runs it), optimum-intel looks for a local folder in the hub cache first, warns
    with a file-not-found error, then loads the folder as asked: the warning only alarms the user."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Could not infer whether the model was already converted")


logging.getLogger("optimum.intel.openvino.modeling_base").addFilter(_HubCacheNoise())

__all__ = ["OVModelForCausalLM", "OVWeightQuantizationConfig", "convert_tokenizer", "nncf", "ov"]
