"""Extension packaging: CMake lists every file on disk, .ui files parse and name what the code uses."""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULES = ("VolumetricSR", "VolumetricSRTraining")
SKIP_PARTS = {"__pycache__", "Testing"}


def cmake_lists(module: str) -> dict[str, set[str]]:
    """``set(NAME ...)`` blocks of the module's CMakeLists.txt, with ${MODULE_NAME} expanded."""
    text = (REPO / module / "CMakeLists.txt").read_text()
    text = re.sub(r"#[^\n]*", "", text).replace("${MODULE_NAME}", module)
    return {name: set(body.split()) for name, body in re.findall(r"set\(\s*(MODULE_\w+)\s+([^)]*)\)", text)}


def files_on_disk(module: str, pattern: str, under: str = "") -> set[str]:
    root = REPO / module
    return {p.relative_to(root).as_posix() for p in (root / under).rglob(pattern)
            if p.is_file() and not SKIP_PARTS & set(p.relative_to(root).parts)
            and not any(part.endswith(".egg-info") for part in p.parts)}


@pytest.mark.parametrize("module", MODULES)
def test_cmake_lists_every_python_file(module):
    lists = cmake_lists(module)
    listed = lists["MODULE_PYTHON_SCRIPTS"]
    on_disk = files_on_disk(module, "*.py")
    missing = sorted(on_disk - listed)
    assert missing == [], f"add to MODULE_PYTHON_SCRIPTS in {module}/CMakeLists.txt:\n  " + "\n  ".join(missing)
    assert sorted(listed - on_disk) == [], "listed files that do not exist"


@pytest.mark.parametrize("module", MODULES)
def test_cmake_lists_every_resource(module):
    listed = cmake_lists(module)["MODULE_PYTHON_RESOURCES"]
    assert listed == files_on_disk(module, "*", "Resources")
    assert {f"Resources/Icons/{module}.png", f"Resources/UI/{module}.ui"} <= listed


@pytest.mark.parametrize("module", MODULES)
def test_only_the_module_file_sits_at_the_top_of_a_module_folder(module):
    """Slicer loads every .py at the top of a scripted-modules folder as a module, in a build and in an
    unbuilt checkout alike: a top-level train.py would be reported as a module without its class."""
    assert {p.name for p in (REPO / module).glob("*.py")} == {f"{module}.py"}


@pytest.mark.parametrize("module", MODULES)
def test_the_module_file_is_thin_and_ctest_finds_every_self_test_check(module):
    """The module file is the module class and thin Widget/Logic/Test classes over its Lib (at most 150
    lines); each check of ``<module>Lib/selftest.py`` is a ``test_*`` method of the module's Test class,
    which ``slicer.testing.runUnitTest`` (ctest) loads by name."""
    text = (REPO / module / f"{module}.py").read_text()
    assert len(text.splitlines()) <= 150
    test_class = next(c for c in ast.walk(ast.parse(text)) if isinstance(c, ast.ClassDef) and c.name == f"{module}Test")
    methods = {f.name for f in test_class.body if isinstance(f, ast.FunctionDef)}
    checks = [f.name for f in ast.parse((REPO / module / f"{module}Lib" / "selftest.py").read_text()).body
              if isinstance(f, ast.FunctionDef) and [a.arg for a in f.args.args] == ["test", "Logic"]]
    assert checks and sorted(f"test_{name}" for name in checks) == sorted(m for m in methods if m.startswith("test_"))


def test_extension_cmake():
    text = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r'set\(EXTENSION_DEPENDS "PyTorch"\)', text)
    assert re.search(r'set\(EXTENSION_CATEGORY "[A-Za-z ]+"\)', text)       # the extension index needs it
    for module in MODULES:
        assert f"add_subdirectory({module})" in text
        module_text = (REPO / module / "CMakeLists.txt").read_text()
        assert "WITH_GENERIC_TESTS" in module_text and "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in module_text
    assert (REPO / "Resources" / "Icons" / "VolumetricSR.png").is_file()


def ui_widgets(module: str) -> dict[str, ET.Element]:
    tree = ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui")
    return {w.get("name"): w for w in tree.iter("widget")}


def widget_code(module: str) -> str:
    """The module file and its panel (``<module>Lib/widget.py``): the code that names .ui widgets."""
    return "\n".join((REPO / module / path).read_text() for path in (f"{module}.py", f"{module}Lib/widget.py"))


def parameter_fields(module: str) -> set[str]:
    """The module's parameter node fields: those of the settings class it is made from, and its node references."""
    import dataclasses

    import slicer_standin

    slicer_standin.install()
    from VolumetricSRLib.settings import RunSettings
    from VolumetricSRTrainingLib.command import TrainingSettings

    cls = {"VolumetricSR": RunSettings, "VolumetricSRTraining": TrainingSettings}[module]
    return {f.name for f in dataclasses.fields(cls)} | set(getattr(cls, "NODES", {}))


@pytest.mark.parametrize("module", MODULES)
def test_ui_names_every_widget_the_code_uses(module):
    widgets = ui_widgets(module)
    used = set(re.findall(r"self\.ui\.(\w+)", widget_code(module)))
    assert used and sorted(used - set(widgets)) == []


@pytest.mark.parametrize("module", MODULES)
def test_ui_parameter_names_are_parameter_node_fields(module):
    fields = parameter_fields(module)
    names = {}
    for name, w in ui_widgets(module).items():
        for p in w.findall("property"):
            if p.get("name") == "SlicerParameterName":
                assert p.get("stdset") == "0", f"{name}: SlicerParameterName must be a dynamic property"
                names[name] = p.find("string").text
    assert names and sorted(set(names.values()) - fields) == []
    assert len(set(names.values())) == len(names), "two widgets bound to one parameter"


@pytest.mark.parametrize("module", MODULES)
def test_ui_custom_widgets_are_declared(module):
    root = ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui").getroot()
    declared = {c.findtext("class") for c in root.iter("customwidget")}
    used = {w.get("class") for w in root.iter("widget")}
    assert sorted(c for c in used if not c.startswith("Q") and c not in declared) == []
    assert root.find("widget").get("class") == "qMRMLWidget"


@pytest.mark.parametrize("module", MODULES)
def test_ui_loads_in_qt_with_the_widgets_the_code_uses(module):
    """Dev check with PySide6 (skipped without it): the .ui builds, each used name is a real widget."""
    pytest.importorskip("PySide6.QtUiTools")
    from ui_preview import child, load_ui

    w = load_ui(REPO / module / "Resources" / "UI" / f"{module}.ui")
    used = set(re.findall(r"self\.ui\.(\w+)", widget_code(module)))
    assert sorted(n for n in used if child(w, n) is None) == []


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_configures_with_a_stand_in_slicer(tmp_path):
    """The CMake files run (with slicer_standin/cmake in place of Slicer) and ship the models."""
    proc = subprocess.run(["cmake", "-S", str(REPO), "-B", str(tmp_path), "-DCMAKE_C_COMPILER_WORKS=1",
                           "-DCMAKE_CXX_COMPILER_WORKS=1", "-DBUILD_TESTING=ON", f"-DSlicer_DIR={REPO / 'Testing/Python/slicer_standin/cmake'}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for module in MODULES:
        assert f"scripted module {module}: " in proc.stdout and f"python unittest {module}.py" in proc.stdout
    shipped = {p.name for p in (REPO / "models").glob("*") if p.is_file()}
    assert {p.name for p in (tmp_path / "lib/Slicer-5.10/models").glob("*")} == shipped
