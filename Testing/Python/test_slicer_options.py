"""The Slicer modules' settings are made from the core's option declarations (volumetricsr.methods.options,
``volumetricsr train``'s common options): the parameter nodes' fields, ranges and choices, with the
same ranges as the core, and no range or choice list written out in the Slicer code or .ui files."""
from __future__ import annotations

import ast
import dataclasses
import typing
import xml.etree.ElementTree as ET

import pytest

import slicer_standin

slicer = slicer_standin.install()

from slicer.parameterNodeWrapper import Choice, WithinRange  # noqa: E402
from volumetricsr.app.train_cli import COMMON_OPTIONS  # noqa: E402
from volumetricsr.common.errors import InputError  # noqa: E402
from volumetricsr.common.options import OneOf  # noqa: E402
from volumetricsr.methods.options import METHOD_OPTIONS, RUN_OPTIONS  # noqa: E402
from VolumetricSRLib.settings import UNSET, RunSettings, offered, parameter_fields, settings_from  # noqa: E402
from VolumetricSRTrainingLib.command import TrainingSettings  # noqa: E402

REPO = slicer_standin.REPO
SETTINGS = (RunSettings, TrainingSettings)
#: Fields that set no declared option: what the panel picks from lists it fills itself (methods, the
#: devices found here), the isotropic switch, the two map checkboxes (the values of ``maps``) and
#: whether a sequence's proxy volume stands for every frame.
PLAIN = {RunSettings: {"method", "isotropic", "device", "consistencyMap", "confidenceMap", "allFrames"},
         TrainingSettings: {"method", "dataPath", "modelId", "device", "resume", "extraArgs", "modelsDir"}}
SLICER_CODE = [path for module in ("VolumetricSR", "VolumetricSRTraining")
               for path in (REPO / module / f"{module}.py", *sorted((REPO / module / f"{module}Lib").glob("*.py")))]
UI_FILES = [REPO / m / "Resources" / "UI" / f"{m}.ui" for m in ("VolumetricSR", "VolumetricSRTraining")]


def annotations(datatype) -> tuple:
    return datatype.__metadata__ if typing.get_origin(datatype) is typing.Annotated else ()


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
def test_every_slicer_setting_is_made_from_its_declaration(cls):
    """Each field that sets a core option gets its parameter-node range or choices from the option's
    rule, its tooltip from the option's help, and its default from the declaration (or the method's)."""
    declared = cls.declarations()
    ways = offered(cls)
    assert set(ways) == {f.name for f in dataclasses.fields(cls)} - PLAIN[cls]
    fields = parameter_fields(cls)
    for name, way in ways.items():
        assert way.option is declared[way.option.name]
        assert way.tooltip.lower().startswith(way.option.help.lower()), name
        datatype, default = fields[name]
        bounds = next((a for a in annotations(datatype) if isinstance(a, WithinRange)), None)
        choice = next((a for a in annotations(datatype) if isinstance(a, Choice)), None)
        assert (bounds.minimum, bounds.maximum) == way.range if way.range else bounds is None, name
        assert tuple(choice.choices) == way.choices if way.choices else choice is None, name
        assert default == (way.sentinel if way.unset else getattr(cls(), name)), name
    assert settings_from(parameter_node(cls), cls) == cls()          # the node's defaults are the settings'


def parameter_node(cls):
    from VolumetricSRLib.settings import parameter_node_class

    return parameter_node_class(cls, f"{cls.__name__}Node")()


@pytest.mark.parametrize("cls", SETTINGS, ids=lambda c: c.__name__)
def test_the_slicer_ranges_and_choices_are_the_cores(cls):
    """A spin box spans the declared range at its step: both ends pass the core's rule, one step beyond
    either does not. The value below the range, "the method's default", is one the rule refuses, and
    reaches the core as not given. A combo box offers every declared value, and UNSET only where the
    rule would refuse it."""
    for name, way in offered(cls).items():
        rule = way.rule
        if way.range:
            low, high = way.range
            first = low + way.step if way.unset else low
            for ok in (first, high):
                rule(name, ok)
            for bad in (first - way.step, high + way.step):
                with pytest.raises(InputError):
                    rule(name, bad)
            if way.unset:
                assert way.sentinel == low and way.value(low) is None and way.value(first) == pytest.approx(first)
        if way.choices:
            offered_values = [c for c in way.choices if not (way.unset and c == UNSET)]
            assert [rule(name, c) for c in offered_values] == list(rule.values), name
            if way.unset:
                with pytest.raises(InputError):
                    rule(name, UNSET)
                assert way.value(UNSET) is None
    ways = offered()
    assert ways["seed"].range == (0, 2**32 - 1) and ways["batchSize"].range == (0, 4096)   # were 2^31-1 and 64


def test_a_slicer_setting_reaches_the_core_as_the_command_line_gives_it():
    node = parameter_node(RunSettings)
    node.method, node.batchSize, node.seed, node.overlapInPlane, node.budget = "selfsr", 8, 2.0**32 - 1, 0.5, "fast"
    s = settings_from(node)
    assert (s.batchSize, s.seed, s.overlapInPlane, s.budget, s.stride) == (8, 2**32 - 1, 0.5, "fast", None)
    assert type(s.seed) is int


# --- no range or choice list written out in the Slicer code ---------------------------------------------

RULE_CALLS = {"WithinRange", "Minimum", "Maximum", "Choice", "Count", "Number", "OneOf", "Triple",
              "setRange", "setMinimum", "setMaximum"}


def declared_choice_sets() -> list[set]:
    options = [*METHOD_OPTIONS.values(), *RUN_OPTIONS.values(), *COMMON_OPTIONS.values()]
    return [{str(v).lower() for v in o.rule.values} for o in options
            if isinstance(o.rule, OneOf) and not set(o.rule.values) <= {True, False}]


def is_literal(node) -> bool:
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    return isinstance(node, (ast.Constant, ast.List, ast.Tuple, ast.Set))


def literal_ranges_and_choices(source: str) -> list[str]:
    """Where ``source`` writes out a range or a choice list: a rule or range call with a literal
    argument, ``.minimum``/``.maximum`` set to a literal, a settings field compared with a literal
    number, or a literal list, tuple or set holding two or more values of one declared choice."""
    fields = {f.name for cls in SETTINGS for f in dataclasses.fields(cls)}
    choices, found = declared_choice_sets(), []
    for node in ast.walk(ast.parse(source)):
        where = f"line {getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            if name in RULE_CALLS and any(is_literal(a) for a in [*node.args, *(k.value for k in node.keywords)]):
                found.append(f"{where}: {name}(...) with a literal")
        elif isinstance(node, ast.Assign):
            if any(getattr(t, "attr", "") in ("minimum", "maximum") for t in node.targets) and is_literal(node.value):
                found.append(f"{where}: a literal minimum or maximum")
        elif isinstance(node, ast.Compare):
            sides = [getattr(s, "operand", s) for s in (node.left, *node.comparators)]    # -1 is UnaryOp(1)
            numbers = [s for s in sides if isinstance(s, ast.Constant) and type(s.value) in (int, float)]
            if numbers and any(getattr(s, "attr", "") in fields for s in sides):
                found.append(f"{where}: a settings field compared with a literal number")
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            texts = {e.value.lower() for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            if any(len(texts & c) >= 2 for c in choices):
                found.append(f"{where}: a literal choice list {sorted(texts)}")
    return found


def test_the_scan_finds_what_it_looks_for():
    """The check below would see each way of writing a range or choice list out."""
    for source in ('x: Annotated[int, WithinRange(0, 64)] = 0', 'box.maximum = 2147483647',
                   'PRECISIONS = ("auto", "fp32", "bf16", "fp16")', 'if self.batchSize > 0: pass',
                   'box.setRange(-1, 32)', 'items = ["gaussian", "rect"]'):
        assert literal_ranges_and_choices(source), source
    assert literal_ranges_and_choices('x = ("stopped", "done", "start")\nif fraction < 1.0: pass') == []


@pytest.mark.parametrize("path", SLICER_CODE, ids=lambda p: p.relative_to(REPO).as_posix())
def test_no_literal_range_or_choice_list_in_the_slicer_code(path):
    assert literal_ranges_and_choices(path.read_text()) == []


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_no_literal_range_choice_list_or_option_help_in_the_ui_files(path):
    """The .ui gives layout and labels: no spin box range, no combo box items, and no tooltip (or
    value) on a widget bound to a declared option (its help and default come from the declaration)."""
    declared = {name for cls in SETTINGS for name in offered(cls)}
    for widget in ET.parse(path).iter("widget"):
        props = {p.get("name"): p for p in widget.findall("property")}
        where = f"{path.name}: {widget.get('name')}"
        if widget.get("class") in ("QSpinBox", "QDoubleSpinBox", "QSlider"):
            assert not {"minimum", "maximum"} & set(props), where
        assert widget.find("item") is None, where
        bound = props.get("SlicerParameterName")
        if bound is not None and bound.findtext("string") in declared:
            assert not {"toolTip", "value"} & set(props), where


def test_the_backend_labels_name_declared_backends_only():
    """The panel labels the backends (PyTorch, ONNX Runtime); what it offers are the declared ones."""
    from VolumetricSRLib.settings import BACKEND_TITLES

    assert set(BACKEND_TITLES) <= set(METHOD_OPTIONS["backend"].rule.values)
    assert offered()["backend"].choices == METHOD_OPTIONS["backend"].rule.values
