"""Test doubles for optional heavy dependencies (TensorRT)."""
