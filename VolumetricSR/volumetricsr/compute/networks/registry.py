"""The architectures a model card can name: ``register_architecture("name")`` on a network factory."""
from __future__ import annotations

from typing import Callable

from volumetricsr.common.registry import registrar

ARCHITECTURES: dict[str, Callable] = {}
#: Decorator: ``name`` in a card's ``architecture`` builds the network with this factory.
register_architecture = registrar(ARCHITECTURES)
