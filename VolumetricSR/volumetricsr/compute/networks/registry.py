"""The architectures a model card can name: ``register_architecture("name")`` on a network factory."""
from __future__ import annotations

from typing import Callable

ARCHITECTURES: dict[str, Callable] = {}


def register_architecture(name: str):
    """Decorator: ``name`` in a card's ``architecture`` builds the network with this factory."""
    def deco(factory):
        ARCHITECTURES[name] = factory
        return factory
    return deco
