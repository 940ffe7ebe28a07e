"""Tests of seg_perception.runtime."""
