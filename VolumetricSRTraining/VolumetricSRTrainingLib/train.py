"""Train a VolumetricSR model: the same code as ``volumetricsr train``.

    python VolumetricSRTraining/VolumetricSRTrainingLib/train.py --method tvsrn --data DIR --out MODEL_ID [...]
    Slicer --no-main-window --python-script VolumetricSRTraining/VolumetricSRTrainingLib/train.py --method tvsrn ...

``--help`` lists the options; ``--progress-json`` prints one JSON object per line for a GUI.
"""
import os
import sys


def main() -> int:
    # This file sits in the Lib package, not at the top of the module folder, where Slicer would load
    # every .py as a module ("class train was not found").
    try:
        import volumetricsr  # noqa: F401
    except ImportError:  # the core beside the Lib package (built extension) or in ../../VolumetricSR (source)
        here = os.path.dirname(os.path.abspath(__file__))
        for folder in (os.path.join(here, os.pardir, os.pardir, "VolumetricSR"), os.path.join(here, os.pardir)):
            if os.path.isdir(os.path.join(folder, "volumetricsr")):
                sys.path.insert(0, os.path.abspath(folder))
                break
    from volumetricsr.app.cli import main_script

    return main_script()


if __name__ == "__main__":
    sys.exit(main())
