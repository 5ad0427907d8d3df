"""Data-parallel training on two gloo ranks under torchrun (CPU): identical weights, a stop on one rank
stops both after the same step, resume is exact, and the training command itself runs under torchrun."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_ctguided import _mri, blobs
from test_training import TINY_ARCH, thin_folder  # noqa: F401 (a fixture)

from volumetricsr import Volume, write_volume
from volumetricsr.compute.models import ModelCard

from volumetricsr.training.distributed import LOCAL, Group
from volumetricsr.training.history import History

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun(*args, timeout=300) -> subprocess.CompletedProcess:
    done = subprocess.run([*TORCHRUN, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def ranks(workdir: Path) -> list[dict]:
    return [torch.load(workdir / f"rank-{r}.pt", weights_only=True) for r in (0, 1)]


def same_weights(a: dict, b: dict) -> bool:
    return all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])


def test_two_ranks_hold_the_same_weights_stop_together_and_resume_exactly(tmp_path):
    worker = HERE / "distributed_worker.py"
    torchrun(worker, tmp_path / "straight", 8)
    straight = ranks(tmp_path / "straight")
    assert [r["status"] for r in straight] == [0, 0] and straight[0]["world"] == 2
    assert same_weights(*straight), "the ranks' weights drifted apart"
    assert straight[0]["first"] != straight[1]["first"], "both ranks drew the same samples"

    cut = tmp_path / "cut"
    torchrun(worker, cut, 8, "--signal-at", 2)          # SIGTERM to rank 1 only, during step 3
    stopped = ranks(cut)
    assert [(r["status"], r["step"]) for r in stopped] == [(130, 3), (130, 3)]
    assert same_weights(*stopped)
    torchrun(worker, cut, 8, "--stop-file-at", 4, "--resume")   # rank 0 writes STOP during step 5
    stopped = ranks(cut)
    assert {r["status"] for r in stopped} == {130} and stopped[0]["step"] == stopped[1]["step"] in (5, 6)
    torchrun(worker, cut, 8, "--resume")
    resumed = ranks(cut)
    assert [(r["status"], r["step"]) for r in resumed] == [(0, 8), (0, 8)]
    assert same_weights(*resumed) and same_weights(resumed[0], straight[0]), "resume is not exact"
    rows = History(cut / "log.jsonl").rows()
    assert [r["step"] for r in rows] == list(range(1, 9))     # rank 0 alone logs, each step once
    assert [r["loss"] for r in rows] == [r["loss"] for r in History(tmp_path / "straight" / "log.jsonl").rows()]


def _ctguided_data(folder: Path) -> Path:
    (folder / "ct").mkdir(parents=True)
    (folder / "mri").mkdir()
    write_volume(Volume(blobs((30, 46, 44)) * 800, (0.8, 0.8, 1.25)), folder / "ct" / "head.nii.gz")
    for k in range(2):
        write_volume(_mri(seed=k), folder / "mri" / f"mr{k}.nii.gz")
    return folder


@pytest.mark.parametrize("method", ["tvsrn", "ctguided"])
def test_the_training_command_runs_under_torchrun_and_writes_one_model(method, thin_folder, tmp_path):
    """Through train.py, for a one-network method and for the GAN with five optimizers and three stages
    (every checkpoint checks that the ranks still hold the same weights)."""
    if method == "tvsrn":
        options, steps = ["--data", thin_folder, "--crop", 16, "--arch", json.dumps(TINY_ARCH),
                          "--max-steps", 4, "--steps-per-epoch", 2], 4
    else:
        options, steps = ["--data", _ctguided_data(tmp_path / "unpaired"), "--stage-iterations", 1,
                          "--batch-size", 2, "--patch", 32], 10
    done = torchrun(ROOT / "VolumetricSRTraining" / "VolumetricSRTrainingLib" / "train.py", "--method", method, "--out", "dist",
                    "--models-dir", tmp_path / "models", "--device", "cpu", "--progress-json", *options)
    events = [json.loads(line)["event"] for line in done.stdout.splitlines() if line.startswith("{")]
    assert events.count("start") == 1 and events.count("model") == 1     # one rank speaks and writes
    card = ModelCard.load(tmp_path / "models" / "dist.json")
    assert card.extra["training"]["ranks"] == 2 and card.extra["training"]["steps"] == steps
    card.build()                                           # plain weights: no wrapper's names in them
    rows = History(tmp_path / "models" / "runs" / "dist" / "log.jsonl").rows()
    assert [r["step"] for r in rows] == list(range(1, steps + 1))


@pytest.mark.parametrize("rank, seed", [(0, 7), (1, [7, 1])])
def test_rank_zero_keeps_the_single_process_stream_and_others_get_their_own(rank, seed):
    assert Group(rank, 2).seed(7) == seed and LOCAL.seed(7) == 7
    assert Group(1, 2, 1).device("cuda") == "cuda:1" and LOCAL.device("cuda") == "cuda"
    assert LOCAL.agree({"loss": 1.5}, True) == ({"loss": 1.5}, True) and LOCAL.gather(3) == [3]
