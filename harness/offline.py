"""Offline mode: the harness never contacts a model hub; every load reads local files only."""
from __future__ import annotations

import os
import sys

OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}
"""Environment variables that switch the Hugging Face libraries to offline mode."""


def enforce_offline() -> None:
    """Switch the Hugging Face libraries to offline mode for this process.

    Sets the environment variables of `OFFLINE_ENV`. `huggingface_hub` reads them once at import,
    so when it is already imported its module constants are set as well.
    """
    os.environ.update(OFFLINE_ENV)
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        # is_offline_mode() returns this constant, read at import time, not the environment.
        constants.HF_HUB_OFFLINE = True
        if hasattr(constants, "HF_HUB_DISABLE_TELEMETRY"):
            constants.HF_HUB_DISABLE_TELEMETRY = True
