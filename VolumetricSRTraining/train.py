"""Train a VolumetricSR model: the same code as ``volumetricsr train``.

    python VolumetricSRTraining/train.py --method tvsrn --data DIR --out MODEL_ID [...]
    Slicer --no-main-window --python-script VolumetricSRTraining/train.py --method tvsrn ...

``--help`` lists the options; ``--progress-json`` prints one JSON object per line for a GUI.
"""
import os
import sys


def main() -> int:
    # Imports live here: Slicer scans every .py file in a module folder, and that scan must stay cheap.
    try:
        import volumetricsr  # noqa: F401
    except ImportError:  # run from a source tree or from Slicer: the package sits in ../VolumetricSR
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "VolumetricSR"))
    from volumetricsr.training.cli import main_script

    return main_script()


if __name__ == "__main__":
    sys.exit(main())
