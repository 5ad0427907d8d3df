"""Stand-in for ``slicer.parameterNodeWrapper``: typed fields with their defaults, validated when set,
and ``connectGui`` binding widgets to fields as Slicer's GUI connectors do."""
import typing


class Validator:
    """As slicer/parameterNodeWrapper/validators.py: ``validate(value)`` raises if ``value`` is not valid."""

    def validate(self, value) -> None:
        raise NotImplementedError("validate is not implemented")


class NotNone(Validator):
    def validate(self, value) -> None:
        if value is None:
            raise ValueError("Value must not be None")


class IsInstance(Validator):
    def __init__(self, classtype):
        self.classtype = classtype

    def validate(self, value) -> None:
        if value is not None and not isinstance(value, self.classtype):
            raise TypeError(f"Value must be of type '{self.classtype}', is type '{type(value)}' value '{value}'")


class WithinRange(Validator):
    def __init__(self, minimum, maximum):
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


class Choice(Validator):
    def __init__(self, choices):
        self.choices = choices

    def validate(self, value) -> None:
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


def _split(datatype):
    """``(type, annotations)`` of a possibly ``Annotated`` field type."""
    if typing.get_origin(datatype) is typing.Annotated:
        return datatype.__origin__, datatype.__metadata__
    return datatype, ()


def _first(annotations, kind):
    return next((a for a in annotations if isinstance(a, kind)), None)


class _Connector:
    """One widget bound to one field, as Slicer's GUI connector for the pair
    (slicer/parameterNodeWrapper/guiConnectors.py): made, it sets the widget up (a QSpinBox or QSlider
    takes an int, a QDoubleSpinBox an int (0 decimals) or a float, each its range from ``WithinRange``
    or the widest; a QComboBox needs ``Choice`` and is refilled with the choices; a QCheckBox takes a
    bool, a QLineEdit a str, a qMRMLNodeComboBox a node class, its ``nodeTypes``); any other pairing is
    an error. ``read``/``write`` the widget's value; ``onChanged(callback)`` the widget's signal."""

    def __init__(self, widget, datatype):
        kind, annotations = _split(datatype)
        cls, self.widget = widget.metaObject().className(), widget
        bounds, choice = _first(annotations, WithinRange), _first(annotations, Choice)
        self.callback = None
        if cls in ("QSpinBox", "QSlider") and kind is int:
            widget.minimum, widget.maximum = (bounds.minimum, bounds.maximum) if bounds else (-2**31, 2**31 - 1)
            self.signal, self.property = "valueChanged", "value"
        elif cls == "QDoubleSpinBox" and kind in (int, float):
            if kind is int:
                widget.decimals = 0
            widget.minimum, widget.maximum = (bounds.minimum, bounds.maximum) if bounds else (float("-inf"),
                                                                                               float("inf"))
            self.signal, self.property = "valueChanged", "value"
        elif cls == "QComboBox" and kind in (int, float, str, bool):
            if choice is None:
                raise RuntimeError("ComboBoxToStringableConnector requires the Choice annotation to be used.")
            widget.clear()
            for c in choice.choices:
                widget.addItem(str(c))
            self.choices, self.signal, self.property = choice.choices, "currentIndexChanged", None
        elif cls == "QCheckBox" and kind is bool:
            self.signal, self.property = "stateChanged", "checked"
        elif cls == "QLineEdit" and kind is str:
            self.signal, self.property = "textChanged", "text"
        elif cls == "qMRMLNodeComboBox" and isinstance(kind, type) and kind.__name__.startswith("vtkMRML"):
            widget.nodeTypes = [kind.__name__]
            self.signal, self.property = "currentNodeChanged", None
        else:
            raise RuntimeError(f"Unable to create GUI connector from datatype '{datatype}' to widget type '{cls}'.")
        self.kind = kind

    def read(self):
        if self.signal == "currentIndexChanged":
            return self.choices[self.widget.currentIndex]
        if self.signal == "currentNodeChanged":
            return self.widget.currentNode()
        value = getattr(self.widget, self.property)
        return int(value) if self.kind is int and self.property == "value" else value

    def write(self, value) -> None:
        if self.signal == "currentIndexChanged":
            if value not in self.choices:
                raise ValueError(f"Unable to find value {value} in choices {self.choices}")
            self.widget.currentIndex = self.choices.index(value)
        elif self.signal == "currentNodeChanged":
            self.widget.setCurrentNode(value)
        elif self.property != "text" or value != self.widget.text:
            setattr(self.widget, self.property, int(value) if self.kind is int and self.property == "value" else value)

    def onChanged(self, callback) -> None:
        signal = getattr(self.widget, self.signal)
        if self.callback is not None:
            signal.disconnect(self.callback)
        self.callback = callback
        if callback is not None:
            signal.connect(callback)


_TYPE_VALIDATORS = {int: lambda: [NotNone(), IsInstance(int)], float: lambda: [NotNone(), IsInstance((int, float))],
                    str: lambda: [NotNone(), IsInstance(str)], bool: lambda: [NotNone(), IsInstance(bool)]}


def _validators(datatype) -> list:
    """What Slicer's serializer for the field checks (slicer/parameterNodeWrapper/serializers.py: its
    type's NotNone and IsInstance, a node's IsInstance only), then the field's own validators."""
    kind, annotations = _split(datatype)
    own = _TYPE_VALIDATORS[kind]() if kind in _TYPE_VALIDATORS else [IsInstance(kind)]
    return own + [a for a in annotations if isinstance(a, Validator)]


def _stored(datatype, value):
    """The value as the field reads it back: Slicer's serializers store a string (a number read back as
    its type, so an int given to a float field is a float) or, for a node, a reference."""
    kind = _split(datatype)[0]
    return kind(str(value)) if kind in (int, float) else value


def parameterNodeWrapper(cls):
    """``cls(rawNode)`` has every annotated field. As in Slicer (slicer/parameterNodeWrapper/wrapper.py),
    the values live in the raw node (the module's scene singleton), so every wrapper of it sees the
    same values, and a field gets its default (given, else 0, "", False or None) where the node has
    none yet. Every value written, a default included, is validated first (:func:`_validators`:
    TypeError for a wrong type, ValueError outside ``WithinRange`` or ``Choice``; nothing is stored
    then). Writing a new value calls the node's observers (real Slicer: its ModifiedEvent).
    ``connectGui(ui)`` (``_connectGui``/``_connectParametersToGui``) makes a :class:`_Connector` for each
    widget whose ``SlicerParameterName`` names a field, fills each with its field's value, then binds
    both ways: a widget's change sets its field, and every change of the node refills all the
    widgets (not written back meanwhile); ``disconnectGui(tag)`` ends that."""
    fields = typing.get_type_hints(cls, include_extras=True)
    blank = {int: 0, float: 0, str: "", bool: False}
    defaults = {name: getattr(cls, name) if hasattr(cls, name) else blank.get(_split(datatype)[0])
                for name, datatype in fields.items()}

    def __init__(self, node=None):
        from .ScriptedLoadableModule import vtkMRMLScriptedModuleNode

        node = node if node is not None else vtkMRMLScriptedModuleNode(cls.__name__)
        object.__setattr__(self, "parameterNode", node)
        object.__setattr__(self, "_guis", {})
        object.__setattr__(self, "_updatingGUIFromParameterNode", False)
        for name, value in defaults.items():
            if name not in node.parameters:
                setattr(self, name, value)

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
        for validator in _validators(fields[name]):
            validator.validate(value)
        value = _stored(fields[name], value)
        changed = self.parameterNode.parameters.get(name, object()) != value
        self.parameterNode.parameters[name] = value
        if changed:
            for callback in list(self.parameterNode.observers):
                callback(self, "ModifiedEvent")

    def _updateGUIFromParameterNode(self, caller=None, event=None):
        if self._updatingGUIFromParameterNode:
            return
        object.__setattr__(self, "_updatingGUIFromParameterNode", True)
        try:
            for connectors, _ in list(self._guis.values()):
                for name, connector in connectors.items():
                    connector.write(getattr(self, name))
        finally:
            object.__setattr__(self, "_updatingGUIFromParameterNode", False)

    def connectGui(self, gui):
        widgets = {w.property("SlicerParameterName"): w for w in vars(gui).values()
                   if w.property("SlicerParameterName")}
        for name in widgets:
            if name not in fields:
                raise ValueError(f"Cannot find a param with the given name: {name}")
        connectors = {name: _Connector(widget, fields[name]) for name, widget in widgets.items()}
        for name, connector in connectors.items():
            connector.write(getattr(self, name))
            connector.onChanged(lambda *args, name=name, connector=connector:
                                self._updatingGUIFromParameterNode or setattr(self, name, connector.read()))
        tag = max(self._guis, default=-1) + 1
        self._guis[tag] = (connectors, self._updateGUIFromParameterNode)
        self.parameterNode.observers.append(self._updateGUIFromParameterNode)
        return tag

    def disconnectGui(self, tag):
        if tag in self._guis:
            connectors, observer = self._guis.pop(tag)
            for connector in connectors.values():
                connector.onChanged(None)
            self.parameterNode.observers.remove(observer)

    members = {"__init__": __init__, "__getattr__": __getattr__, "__setattr__": __setattr__,
               "__doc__": cls.__doc__, "fields": fields, "connectGui": connectGui, "disconnectGui": disconnectGui,
               "_updateGUIFromParameterNode": _updateGUIFromParameterNode}
    return type(cls.__name__, (), members)
