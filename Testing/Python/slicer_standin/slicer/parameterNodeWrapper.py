"""Stand-in for ``slicer.parameterNodeWrapper``: typed fields with their defaults, no GUI binding."""
import typing


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


def parameterNodeWrapper(cls):
    """``cls(rawNode)`` has every annotated field. As in Slicer, the values live in the raw node
    (the module's scene singleton), so every wrapper of it sees the same values, and a field gets its
    default (None for node references) only where the node has no value yet. Setting a field to a
    new value calls the node's observers (real Slicer: its ModifiedEvent); ``connectGui`` binds
    nothing (tests set the fields the GUI would set)."""
    fields = typing.get_type_hints(cls, include_extras=True)
    defaults = {name: getattr(cls, name, None) for name in fields}

    def __init__(self, node=None):
        from .ScriptedLoadableModule import vtkMRMLScriptedModuleNode

        node = node if node is not None else vtkMRMLScriptedModuleNode(cls.__name__)
        object.__setattr__(self, "parameterNode", node)
        for name, value in defaults.items():
            node.parameters.setdefault(name, value)

    def __getattr__(self, name):
        if name in fields:
            return self.parameterNode.parameters[name]
        if name == "observers":
            return self.parameterNode.observers
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name not in fields:
            object.__setattr__(self, name, value)
            return
        changed = self.parameterNode.parameters.get(name, object()) != value
        self.parameterNode.parameters[name] = value
        if changed:
            for callback in list(self.parameterNode.observers):
                callback(self, "ModifiedEvent")

    members = {"__init__": __init__, "__getattr__": __getattr__, "__setattr__": __setattr__,
               "__doc__": cls.__doc__, "fields": fields,
               "connectGui": lambda self, ui: "gui-tag", "disconnectGui": lambda self, tag: None}
    return type(cls.__name__, (), members)
