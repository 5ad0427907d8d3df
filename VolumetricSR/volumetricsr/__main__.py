"""``python -m volumetricsr ...`` (and ``torchrun ... -m volumetricsr train ...``) == ``volumetricsr ...``."""
import sys

from .cli import main

sys.exit(main())
