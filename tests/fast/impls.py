"""The two implementations of every hot-path module, side by side, for tests that run both."""

from __future__ import annotations

import importlib
from types import ModuleType

from engine._fast._py import bucket as py_bucket
from engine._fast._py import serialize as py_serialize
from engine._fast._py import validate as py_validate

# Imported by name so a missing build fails these tests instead of silently testing the twin twice.
c_validate: ModuleType = importlib.import_module("engine._fast.validate")
c_serialize: ModuleType = importlib.import_module("engine._fast.serialize")
c_bucket: ModuleType = importlib.import_module("engine._fast.bucket")

VALIDATE = {"compiled": c_validate, "pure": py_validate}
SERIALIZE = {"compiled": c_serialize, "pure": py_serialize}
BUCKET = {"compiled": c_bucket, "pure": py_bucket}
