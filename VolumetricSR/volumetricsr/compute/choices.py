"""The compute layer's choices, importable without PyTorch (the option declarations list them)."""

#: How overlapping windows are combined (:func:`~.engine.sliding_window_inference`).
BLENDS = ("gaussian", "uniform")
#: Inference precision (:mod:`.predictors`); auto: bf16 where the device has native bf16, else fp32.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: The CLADE generator's normalisation (:mod:`.networks.clade`).
NORMS = ("demod", "instance")
