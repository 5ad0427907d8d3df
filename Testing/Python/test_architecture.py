"""The shape of the core: the layers (docs/architecture.md) hold, no module imports itself in a cycle,
and the guide to adding a method works as written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "VolumetricSR"


def test_the_layer_contracts_hold():
    """``lint-imports`` with the contracts in pyproject.toml: each layer imports only from those below
    it (imports inside functions included), and no learned method imports another's package."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                          capture_output=True, encoding="utf-8", env={"PYTHONPATH": str(CORE), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop(); on.discard(w); component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_takes_part_in_an_import_cycle():
    sys.path.insert(0, str(CORE))
    graph = grimp.build_graph("volumetricsr", cache_dir=None)
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("volumetricsr")}
             for m in graph.modules}
    assert len(edges) > 60                       # the whole package was read
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]       # the check finds one
    assert _cycles(edges) == []


TOY = '''"""Toy: a plane method over a row upsampler, as docs/architecture.md's "Adding a method" says."""
import numpy as np

from volumetricsr.compute.networks import RowUpsampler
from volumetricsr.methods.base import RunContext, register
from volumetricsr.methods.options import method_rules
from volumetricsr.methods.plane import PlaneMethod


class Toy(PlaneMethod):
    name = "toy"
    title = "Toy"
    description = "A row upsampler from a saved model, or linear interpolation."
    option_rules = method_rules("model", "batch_size")

    def upsample(self, stack, grid, ctx: RunContext, *, model=None, batch_size=None):
        ctx.report(0.0, "toy: starting")
        ctx.check()
        net = self.load_card(model).build() if model else RowUpsampler(grid.n_out // grid.n_in or 2)
        lo, hi = float(stack.min()), float(stack.max()) or 1.0
        work = ((stack - lo) / (hi - lo)).astype(np.float32)
        return self.finish(self.predictions(net.eval(), work, ctx, batch_size=batch_size), hi - lo, lo, stack,
                           (lo, hi), grid, stack.shape[1:], ctx)


TOY = register(Toy())
'''

TOY_TASK = '''"""Toy: its training task."""
import numpy as np
import torch

from volumetricsr.common.options import Count, Option
from volumetricsr.compute.networks import RowUpsampler
from volumetricsr.training.tasks import OneNetworkTask, register_task


@register_task("toy")
class ToyTask(OneNetworkTask):
    method = "toy"
    options = (Option("factor", Count(2, 16), "thin slices per thick slice", default=2),)

    @classmethod
    def from_config(cls, config, device, cache=None):
        return cls(config, device)

    def __init__(self, config, device="cpu"):
        super().__init__(config, device)
        self.net = RowUpsampler(config["factor"], features=4, blocks=1)
        self.opt = torch.optim.Adam(self.net.parameters(), 1e-3)
        self.sched = torch.optim.lr_scheduler.ConstantLR(self.opt, 1.0)

    def split(self):
        return {"train": ["noise"], "val": []}

    def train_step(self, step, rng):
        x = torch.from_numpy(rng.random((2, 1, 5, 8), dtype=np.float32))
        loss = (self.net(x) - torch.nn.functional.interpolate(x, size=(9, 8), mode="bilinear",
                                                              align_corners=True)).abs().mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return {"loss": loss.item()}

    def model_card(self):
        return self.net.state_dict(), {"method": "toy", "architecture": {"name": "row-upsampler", "args": {
            "factor": self.config["factor"], "features": 4, "blocks": 1}}, "native_factor": self.config["factor"],
            "modality": "any", "normalization": {"kind": "minmax"}, "training_data": "noise"}
'''


def test_adding_a_method_as_the_guide_says(tmp_path, monkeypatch, capsys):
    """Steps 1-5 of "Adding a method" with a toy: a package with a method and a task, registered,
    then run from the command line with declared options, trained, and exported to ONNX."""
    import importlib

    import numpy as np

    from volumetricsr.app.cli import main
    from volumetricsr.common.errors import InputError
    from volumetricsr.data.io import read_volume, write_volume
    from volumetricsr.data.volume import Volume
    from volumetricsr.methods import get_method
    from volumetricsr.methods.options import method_rules

    guide = (ROOT / "docs" / "architecture.md").read_text()
    for step in ("**Make a package**", "**Write the method**", "**Register it**", "**If it has a network**",
                 "**If it trains**", "**Test it**"):
        assert step in guide
    package = tmp_path / "toymethods" / "toy"                          # 1. a package with method.py
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text('"""Toy."""\n')
    (package / "method.py").write_text(TOY)
    (package / "task.py").write_text(TOY_TASK)                         # 5. and task.py
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("VOLUMETRICSR_MODELS", str(tmp_path / "models"))
    importlib.import_module("toymethods.toy.method")                   # 3. importing it registers it
    importlib.import_module("toymethods.toy.task")
    toy = get_method("toy")
    with pytest.raises(KeyError, match="undeclared"):                  # 2. options come from the declarations
        method_rules("toy_strength")
    with pytest.raises(InputError, match="has no option iterations"):
        toy.check_options({"iterations": 5})

    rng = np.random.default_rng(0)
    write_volume(Volume(rng.random((6, 16, 16)).astype(np.float32) * 100, spacing=(1.0, 1.0, 2.0)),
                 tmp_path / "in.nii.gz")
    assert main(["infer", str(tmp_path / "in.nii.gz"), str(tmp_path / "out.nii.gz"), "--method", "toy",
                 "--batch-size", "3", "--quiet"]) == 0                 # the CLI offers it, flags included
    assert read_volume(tmp_path / "out.nii.gz").array.shape == (11, 16, 16)

    assert main(["train", "--method", "toy", "--out", "toy-x2", "--models-dir", str(tmp_path / "models"),
                 "--max-steps", "3", "--epochs", "1"]) == 0            # 5. the training core runs its task
    assert main(["infer", str(tmp_path / "in.nii.gz"), str(tmp_path / "out2.nii.gz"), "--method", "toy",
                 "--model", "toy-x2", "--quiet"]) == 0                  # 4. its models load through the card
    capsys.readouterr()
    assert main(["export-onnx", "--model", "toy-x2", str(tmp_path / "toy.onnx")]) == 0
    assert "max |ONNX Runtime - torch|" in capsys.readouterr().out and (tmp_path / "toy.onnx").is_file()
