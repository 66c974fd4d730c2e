"""Pytest set-up shared by the unit tests and the notebook runs: offline, quiet, deterministic."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MMTUTOR_OFFLINE", "1")

from mmtutor.runtime import forbid_network  # noqa: E402

forbid_network()
