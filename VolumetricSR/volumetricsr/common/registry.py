"""Named registries: the architectures a model card can name, the training tasks a method has."""
from __future__ import annotations

from typing import Callable


def registrar(table: dict) -> Callable:
    """``registrar(table)(name)``: a decorator that puts what it decorates into ``table`` under ``name``."""
    def register(name: str):
        def deco(obj):
            table[name] = obj
            return obj
        return deco
    return register
