"""Training: one loop core (:mod:`.loop`), the work-folder harness around it (:mod:`.trainer`), the task
interface (:mod:`.tasks`; each method's task is in its package), thick/thin pairs (:mod:`.pairs`), patch
samplers (:mod:`.samplers`), shared losses (:mod:`.losses`) and checkpoints (:mod:`.checkpoint`).

Entry point: ``volumetricsr train --method tvsrn --data DIR --out MODEL_ID`` (see :mod:`volumetricsr.app.train_cli`); the
submodules are imported on use, so the command line can say clearly when PyTorch is missing.
"""
