"""``python -m volumetricsr ...`` (and ``torchrun ... -m volumetricsr train ...``) == ``volumetricsr ...``."""
import sys

from volumetricsr.app.cli import main

sys.exit(main())
