"""The offline demo domain: synthetic charts, distractors, truth, and the tiny CLIP.

Build it with `python -m mmgen.demo data_dir=DIR` or `ensure_demo_data(DIR)`.
"""
from mmgen.demo.build import build_demo, ensure_demo_data

__all__ = ["build_demo", "ensure_demo_data"]
