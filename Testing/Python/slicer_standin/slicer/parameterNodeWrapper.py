"""Stand-in for ``slicer.parameterNodeWrapper``: typed fields with their defaults, no GUI binding."""
import typing


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


def parameterNodeWrapper(cls):
    """``cls(rawNode)`` has every annotated field, set to its default (None for node references).
    Setting a field to a new value calls the observers (real Slicer: the node's ModifiedEvent);
    ``connectGui`` binds nothing (tests set the fields the GUI would set)."""
    fields = typing.get_type_hints(cls, include_extras=True)
    defaults = {name: getattr(cls, name, None) for name in fields}

    def __init__(self, node=None):
        object.__setattr__(self, "observers", [])
        self.parameterNode = node
        for name, value in defaults.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        changed = name in fields and getattr(self, name, object()) != value
        object.__setattr__(self, name, value)
        if changed:
            for callback in list(self.observers):
                callback(self, "ModifiedEvent")

    members = {"__init__": __init__, "__setattr__": __setattr__, "__doc__": cls.__doc__, "fields": fields,
               "connectGui": lambda self, ui: "gui-tag", "disconnectGui": lambda self, tag: None}
    return type(cls.__name__, (), members)
