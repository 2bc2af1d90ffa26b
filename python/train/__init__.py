"""Pretraining a small GPT on data fed by nanobpe (nanochat-style, readable, single file per concern).

    base.py        python -m train.base / torchrun ... -m train.base: the training script
    sample.py      python -m train.sample: text from a checkpoint
    gpt.py         the model (rotary, RMSNorm, QK norm, ReLU², soft-capped logits)
    optim.py       Muon for the transformer matrices, AdamW for embedding and head
    data.py        nanobpe's Rust loader → pinned buffers → device, int64
    checkpoint.py  atomic checkpoints without pickle
    common.py      torchrun environment, devices, peak FLOPs

torch is needed here (`pip install "nanobpe[train]"`); the nanobpe package itself never imports this.
"""
