"""Pretraining scripts fed by nanobpe (`python -m train.base` under torchrun).

Not written yet: tracked by the issue on `train.base` and the Rust streaming loader. Nothing here is importable
as a trainer today.
"""
