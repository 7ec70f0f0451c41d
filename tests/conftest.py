"""Shared fixtures: small in-memory modalities for tests that must not depend on file formats."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
