"""Nothing leaves this machine unless the user asked for a download.

The libraries EasyTune runs reach the network on their own unless told not to: huggingface_hub and
transformers ask the hub about models, gradio reports analytics. OFFLINE_ENV turns them off; go_offline
sets it in the process environment, which every subprocess inherits, before those libraries are
imported. A hub download the user starts is EasyTune's own (easytune.models.hub_download) and follows
the user's own HF_HUB_OFFLINE, remembered here first. OpenVINO's usage reports have no such switch:
easytune.openvino_stack declines them.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
               "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TELEMETRY_ENABLED": "False", "DO_NOT_TRACK": "1"}


def go_offline() -> None:
    """Turn off the libraries' own network use in this process and the ones it starts."""
    from easytune.models.sources import keep_offline_choice

    keep_offline_choice()  # hub downloads the user starts follow the user's own HF_HUB_OFFLINE, not the app's
    os.environ.update(OFFLINE_ENV)
