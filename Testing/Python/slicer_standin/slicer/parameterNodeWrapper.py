"""Stand-in for ``slicer.parameterNodeWrapper``: typed fields with their defaults, and ``connectGui``
doing what Slicer's GUI connectors do when they connect (not the binding that follows)."""
import typing


class WithinRange:
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum


class Choice:
    def __init__(self, choices):
        self.choices = list(choices)


def _split(datatype):
    """``(type, annotations)`` of a possibly ``Annotated`` field type."""
    if typing.get_origin(datatype) is typing.Annotated:
        return datatype.__origin__, datatype.__metadata__
    return datatype, ()


def _first(annotations, kind):
    return next((a for a in annotations if isinstance(a, kind)), None)


def _connect(widget, name, datatype, value) -> None:
    """As Slicer's connector for ``widget`` and ``datatype`` (slicer/parameterNodeWrapper/guiConnectors.py):
    a QSpinBox or QSlider takes an int, a QDoubleSpinBox a float, each its range from ``WithinRange``;
    a QComboBox needs ``Choice`` and is refilled with the choices; a QCheckBox takes a bool and a
    QLineEdit a str; any other pairing is an error. Then the widget shows ``value``."""
    kind, annotations = _split(datatype)
    cls = widget.metaObject().className()
    bounds = _first(annotations, WithinRange)
    if cls in ("QSpinBox", "QSlider", "QDoubleSpinBox"):
        if kind is not (float if cls == "QDoubleSpinBox" else int):
            raise RuntimeError(f"Unable to create GUI connector from '{datatype}' to widget type '{cls}' ({name})")
        if bounds is not None:
            widget.minimum, widget.maximum = bounds.minimum, bounds.maximum
        elif cls != "QDoubleSpinBox":
            widget.minimum, widget.maximum = -2**31, 2**31 - 1
        widget.value = value
    elif cls == "QComboBox":
        choice = _first(annotations, Choice)
        if choice is None:
            raise RuntimeError(f"ComboBoxToStringableConnector requires the Choice annotation to be used ({name}).")
        widget.clear()
        for c in choice.choices:
            widget.addItem(str(c))
        widget.currentIndex = choice.choices.index(value)
    elif cls == "QCheckBox" and kind is bool:
        widget.checked = value
    elif cls == "QLineEdit" and kind is str:
        widget.text = value
    elif not (cls == "qMRMLNodeComboBox" and isinstance(kind, type) and kind.__name__.startswith("vtkMRML")):
        raise RuntimeError(f"Unable to create GUI connector from '{datatype}' to widget type '{cls}' ({name})")


def parameterNodeWrapper(cls):
    """``cls(rawNode)`` has every annotated field. As in Slicer, the values live in the raw node
    (the module's scene singleton), so every wrapper of it sees the same values, and a field gets its
    default (None for node references) only where the node has no value yet. Setting a field to a
    new value calls the node's observers (real Slicer: its ModifiedEvent). ``connectGui(ui)`` sets
    up each widget whose ``SlicerParameterName`` names a field as Slicer's connectors do (range,
    choices, the field's value; see :func:`_connect`); it binds nothing after that (tests set the
    fields the GUI would set)."""
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

    def connectGui(self, gui):
        for widget in vars(gui).values():
            name = widget.property("SlicerParameterName")
            if name:
                if name not in fields:
                    raise ValueError(f"Cannot find a param with the given name: {name}")
                _connect(widget, name, fields[name], getattr(self, name))
        return "gui-tag"

    members = {"__init__": __init__, "__getattr__": __getattr__, "__setattr__": __setattr__,
               "__doc__": cls.__doc__, "fields": fields, "connectGui": connectGui,
               "disconnectGui": lambda self, tag: None}
    return type(cls.__name__, (), members)
