"""Options are declared once (volumetricsr.methods.options): the command line's flags and every
method's checks are made from the declarations, with the same ranges and choices."""
from __future__ import annotations

import ast
import argparse
from pathlib import Path

import pytest

from volumetricsr.app.cli import build_parser
from volumetricsr.app.train_cli import COMMON_OPTIONS
from volumetricsr.app.train_cli import build_parser as train_parser
from volumetricsr.common.errors import InputError
from volumetricsr.common.options import Count, Number, OneOf, Several, Triple
from volumetricsr.methods import available_methods
from volumetricsr.methods.options import GROUPS, METHOD_OPTIONS, RUN_OPTIONS
from volumetricsr.training.tasks import get_task, trainable

CORE = Path(__file__).resolve().parents[2] / "VolumetricSR" / "volumetricsr"
APP = CORE / "app"


def _actions(parser: argparse.ArgumentParser) -> dict:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {a.dest: a for a in p._actions} for name, p in sub.choices.items()}


def _matches(action: argparse.Action, option) -> None:
    rule = option.rule
    negated = [f"--no-{option.cli_flag[2:]}"] if option.negatable else []
    assert action.option_strings == [option.cli_flag, *negated] and action.help == option.help
    if option.flag:
        assert action.const == option.const
    elif option.negatable:
        assert isinstance(action, argparse.BooleanOptionalAction)
    elif isinstance(rule, OneOf) and set(rule.values) <= {True, False}:
        assert action.const is True and action.nargs == 0
    elif isinstance(rule, OneOf):
        assert action.choices == [str(v) for v in rule.values]
    elif isinstance(rule, Triple):
        assert action.nargs == 3 and action.type is {Count: int, Number: float}[type(rule.item)]
    elif isinstance(rule, Several):
        assert action.nargs == rule.count and action.type is {Count: int, Number: float}[type(rule.item)]
    elif isinstance(rule, (Count, Number)):
        assert action.type is {Count: int, Number: float}[type(rule)]


def test_every_declared_option_is_a_flag_of_infer_and_infer_batch_made_from_its_declaration():
    commands = _actions(build_parser())
    assert sorted(n for names in GROUPS.values() for n in names) == sorted(METHOD_OPTIONS)
    for command in ("infer", "infer-batch"):
        for option in [*METHOD_OPTIONS.values(), *(RUN_OPTIONS[n] for n in ("spacing", "axis", "device", "threads",
                                                                             "force"))]:
            _matches(commands[command][option.name], option)
    _matches(commands["infer"]["dtype"], RUN_OPTIONS["dtype"])
    _matches(commands["infer"]["enforce_consistency"], RUN_OPTIONS["enforce_consistency"])


def test_the_common_training_flags_are_made_from_their_declarations():
    actions = {a.dest: a for a in train_parser(None)._actions}
    for option in COMMON_OPTIONS.values():
        _matches(actions[option.name], option)


def test_every_trainable_tasks_flags_and_checks_are_made_from_its_declarations():
    """``volumetricsr train --method M``: M's own flags are its task's declared options (flag, help,
    default, range or choices), and its checks their rules."""
    common = {a.dest for a in train_parser(None)._actions}
    assert {"clade", "ctguided", "selfsr", "tvsrn"} <= set(trainable())
    for method in trainable():
        task = get_task(method)
        actions = {a.dest: a for a in train_parser(method)._actions if a.dest not in common}
        assert sorted(actions) == sorted(o.name for o in task.options), method
        assert task.option_rules == {o.name: o.rule for o in task.options}, method
        for option in task.options:
            _matches(actions[option.name], option)
            assert actions[option.name].default == option.default, (method, option.name)


def test_no_task_module_writes_a_flag_by_hand():
    """Every training flag comes from a declaration: no ``add_argument`` call (and so no literal range or
    choice list in one) in the methods' packages, the task interface or the slice profiles."""
    for path in [*(CORE / "methods").rglob("*.py"), CORE / "training" / "tasks.py", CORE / "data" / "profiles.py"]:
        calls = [node.lineno for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)
                 and getattr(node.func, "attr", "") == "add_argument"]
        assert not calls, f"{path.relative_to(CORE)}:{calls}"


def test_every_method_checks_its_options_with_the_declared_rules():
    for method in available_methods():
        for name, rule in method.option_rules.items():
            assert name in METHOD_OPTIONS, f"{method.name}: option {name} is not declared"
            declared = METHOD_OPTIONS[name].rule
            if rule != declared:      # a method may allow less (its own budgets), never another kind
                assert type(rule) is type(declared), (method.name, name)
                if isinstance(rule, OneOf):
                    assert set(rule.values) < set(declared.values), (method.name, name)
                else:
                    assert declared.low <= rule.low and rule.high <= declared.high, (method.name, name)


@pytest.mark.parametrize("name, bad", [("seed", 2**32), ("batch_size", 0), ("window", (0, 8, 8)),
                                       ("overlap", (1.0, 0.5, 0.5)), ("budget", "forever")])
def test_a_value_outside_the_declaration_is_refused_by_the_api_as_by_the_command_line(name, bad):
    from volumetricsr.app.api import check_request

    method = next(m for m in available_methods() if name in m.option_rules)
    with pytest.raises(InputError, match=f"--{name.replace('_', '-')}"):
        check_request(method.name, None, {name: bad})


def test_no_literal_range_or_choice_list_in_the_flags_of_the_entry_points():
    """``choices=[...]`` or ``choices=(...)`` written out, or a ``Count(...)``/``Number(...)`` rule made
    in app/: every range and choice list comes from a declaration."""
    for path in APP.glob("*.py"):
        tree = ast.parse(path.read_text())
        declared = {id(arg) for node in ast.walk(tree) if isinstance(node, ast.Call)
                    and getattr(node.func, "id", "") == "Option" for arg in node.args[1:2]}
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "choices":
                assert not isinstance(node.value, (ast.List, ast.Tuple, ast.Set)), f"{path.name}:{node.value.lineno}"
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("Count", "Number", "OneOf", "Triple"):
                assert id(node) in declared, f"{path.name}:{node.lineno}: a rule outside an Option declaration"
