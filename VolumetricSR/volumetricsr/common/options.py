"""Rules for option values, checked before any work: one place for the CLI, the API and the Slicer panel.

A method lists its options with a rule each (``Method.option_rules``); :func:`check_options` turns
a dict of given options into clean values or raises one :class:`InputError` that names the option
the way the API and the command line spell it, what is allowed and what was given.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable, Mapping

from volumetricsr.common.errors import InputError, UsageError

Rule = Callable[[str, Any], Any]


def label(name: str) -> str:
    """``batch_size`` -> ``batch_size (--batch-size)``: the API's and the command line's spelling."""
    return f"{name} (--{name.replace('_', '-')})"


def _whole(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)          # a Qt spin box hands out 4.0
    return None


@dataclass(frozen=True)
class Count:
    """A whole number in ``[low, high]``."""

    low: int = 1
    high: int = 4096

    def describe(self) -> str:
        return f"a whole number from {self.low} to {self.high}"

    def __call__(self, name: str, value) -> int:
        n = _whole(value)
        if n is None or not self.low <= n <= self.high:
            raise InputError(f"{label(name)} must be {self.describe()}; got {value!r}.")
        return n


@dataclass(frozen=True)
class Number:
    """A finite real number in ``(low, high]`` (``[low, high)`` with ``fraction=True``)."""

    low: float = 0.0
    high: float = math.inf
    unit: str = ""
    fraction: bool = False

    def describe(self) -> str:
        if self.fraction:
            return f"a number from {self.low:g} up to, not including, {self.high:g}"
        upper = f" and at most {self.high:g}{self.unit}" if math.isfinite(self.high) else ""
        return f"a number above {self.low:g}{self.unit}{upper}"

    def __call__(self, name: str, value) -> float:
        ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            v = float(value)
            ok = self.low <= v < self.high if self.fraction else self.low < v <= self.high
        if not ok:
            raise InputError(f"{label(name)} must be {self.describe()}; got {value!r}.")
        return float(value)


@dataclass(frozen=True)
class Triple:
    """Three values (depth, rows, columns), each following ``item``."""

    item: Any

    def __call__(self, name: str, value) -> tuple:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 3:
            raise InputError(f"{label(name)} needs 3 values (depth, rows, columns), each {self.item.describe()}; "
                             f"got {value!r}.")
        try:
            return tuple(self.item(name, v) for v in value)
        except InputError:
            raise InputError(f"{label(name)} needs 3 values (depth, rows, columns), each {self.item.describe()}; "
                             f"got {tuple(value)!r}.") from None


@dataclass(frozen=True)
class Several:
    """``count`` values, each following ``item`` (``--loss-slices A B``)."""

    item: Any
    count: int

    def __call__(self, name: str, value) -> tuple:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != self.count:
            raise InputError(f"{label(name)} needs {self.count} values, each {self.item.describe()}; got {value!r}.")
        return tuple(self.item(name, v) for v in value)


@dataclass(frozen=True)
class OneOf:
    values: tuple

    def canonical(self, value):
        """A text ``value`` as declared (any case, spaces around it dropped; lower case if not declared)."""
        if not isinstance(value, str):
            return value
        key = value.strip().lower()
        return next((v for v in self.values if isinstance(v, str) and v.lower() == key), key)

    def __call__(self, name: str, value):
        key = self.canonical(value)
        if key not in self.values:
            raise InputError(f"{label(name)} must be one of {', '.join(map(str, self.values))}; got {value!r}.")
        return key


def text(name: str, value) -> str:
    """A non-empty string (a model id, a path)."""
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{label(name)} must be a non-empty text (an id or a path); got {value!r}.")
    return value.strip()


FRACTION = Number(0.0, 1.0, fraction=True)
BATCH = Count(1, 4096)
THREADS = Count(1, 1024)
SPACING = Number(0.0, 1000.0, " mm")


def check_options(owner: str, rules: Mapping[str, Rule], options: Mapping[str, Any]) -> dict:
    """Clean values of ``options`` (None means "not given" and is dropped) under ``rules``."""
    unknown = sorted(set(options) - set(rules))
    if unknown:
        raise InputError(f"{owner} has no option {', '.join(unknown)} (its options: {', '.join(rules) or 'none'}).")
    return {k: rules[k](k, v) for k, v in options.items() if v is not None}


def check_spacing(spacing) -> float | None:
    """The target spacing: None (isotropic) or a positive number of mm."""
    return None if spacing is None else SPACING("spacing", spacing)


# ----------------------------------------------------------------------------- declarations

#: The argparse type of each rule's values.
def _kind(rule) -> Any:
    if isinstance(rule, Count):
        return int
    if isinstance(rule, Number):
        return float
    return str


@dataclass(frozen=True)
class Option:
    """One option, declared once: its name (the API's keyword; ``--name-with-dashes`` on the command
    line), its rule (type, range or choices: the checks, the CLI flag and the Slicer panel's range all
    come from it), its default (None: the method's or budget's own) and its help. ``flag``/``const``:
    an on/off option shown as one flag that sets ``const`` (``--no-gmap`` sets ``gmap`` False).
    ``metavar``: the value's name in the help (a Triple's three). ``negatable``: an on/off option with
    both ``--name`` and ``--no-name`` (not given: None, the task decides)."""

    name: str
    rule: Any
    help: str
    default: Any = None
    flag: str = ""
    const: Any = None
    metavar: Any = None
    many: bool = False          # one or more values on the command line
    negatable: bool = False

    @property
    def cli_flag(self) -> str:
        return self.flag or f"--{self.name.replace('_', '-')}"

    def add_to(self, parser) -> None:
        """Add this option's flag to an argparse parser or group."""
        kwargs: dict = {"dest": self.name, "help": self.help, "default": self.default}
        if self.flag:
            kwargs.update(action="store_const", const=self.const)
        elif self.negatable:
            kwargs.update(action=argparse.BooleanOptionalAction)
        elif isinstance(self.rule, OneOf) and set(self.rule.values) <= {True, False}:
            kwargs.update(action="store_const", const=True)
        elif isinstance(self.rule, OneOf):
            kwargs.update(choices=[str(v) for v in self.rule.values], type=self.rule.canonical,
                          nargs="+" if self.many else None)
        elif isinstance(self.rule, Triple):
            kwargs.update(type=_kind(self.rule.item), nargs=3, metavar=self.metavar or ("D", "H", "W"))
        elif isinstance(self.rule, Several):
            kwargs.update(type=_kind(self.rule.item), nargs=self.rule.count, metavar=self.metavar)
        else:
            kwargs.update(type=_kind(self.rule), **({"metavar": self.metavar} if self.metavar else {}))
        parser.add_argument(self.cli_flag, **kwargs)


def rules_of(options: "Mapping[str, Option] | tuple", *names: str, **refined: Rule) -> dict[str, Rule]:
    """``{name: rule}`` of the declared ``options`` named (all when none are), with ``refined`` rules
    where a method allows less than the declaration (its own budgets, say)."""
    declared = options if isinstance(options, Mapping) else {o.name: o for o in options}
    unknown = (set(names) | set(refined)) - set(declared)
    if unknown:
        raise KeyError(f"undeclared options: {sorted(unknown)}")
    return {n: refined.get(n, declared[n].rule) for n in (names or tuple(declared))}


class ArgumentParser(argparse.ArgumentParser):
    """A parser whose mistakes are one line, not a usage block: a :class:`UsageError` with argparse's
    message and where to look (``volumetricsr: error: argument --spacing: invalid float value: 'x'
    (`volumetricsr infer --help` shows what it takes)``). Its subcommands' parsers are of this class too."""

    def error(self, message: str, prog: str = ""):
        raise UsageError(f"{message} (`{prog or self.prog} --help` shows what it takes)")

    def parse_args(self, args=None, namespace=None):
        """As argparse's, with unknown flags sent to the help of the subcommand they were given to."""
        known, extra = self.parse_known_args(args, namespace)
        if extra:
            chosen = [a.choices[getattr(known, a.dest)] for a in self._actions
                      if isinstance(a, argparse._SubParsersAction) and getattr(known, a.dest, None) in a.choices]
            self.error(f"unrecognized arguments: {' '.join(extra)}", chosen[0].prog if chosen else "")
        return known

