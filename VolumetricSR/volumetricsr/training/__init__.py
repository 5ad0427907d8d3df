"""Training: one loop core (:mod:`.loop`), the work-folder harness around it (:mod:`.trainer`),
per-method tasks (:mod:`.tasks`), the data
(:mod:`.data`), checkpoints (:mod:`.checkpoint`) and model export (:mod:`.export`).

Entry point: ``volumetricsr train --method tvsrn --data DIR --out MODEL_ID`` (see :mod:`.cli`); the
submodules are imported on use, so the command line can say clearly when PyTorch is missing.
"""
