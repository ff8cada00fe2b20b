"""Coda Voice: a real-time spoken conversation engine."""

import os as _os

# Nothing phones home. ONNX Runtime (loaded by Piper, Silero VAD, Smart Turn and the
# memory embedder) ships Microsoft's 1DS telemetry, which resolves and uploads to
# events.data.microsoft.com from Linux too, and keeps a device id under ~/.cache;
# the Hugging Face hub is never to be asked for anything. These must be set before
# any of those libraries loads, so they are set when Coda is imported. A user who
# sets them otherwise on purpose keeps their choice.
for _name in ("ORT_DISABLE_TELEMETRY", "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    _os.environ.setdefault(_name, "1")

__version__ = "0.1.0"
