"""Exceptions with messages meant for the user: what is wrong and what to do."""


class VolumetricSRError(Exception):
    """Base class of every error the core raises on purpose."""


class InputError(VolumetricSRError):
    """The input file or volume cannot be used as it is."""


class AlreadyIsotropicError(InputError):
    """The volume already has the requested through-plane spacing."""


class UsageError(VolumetricSRError):
    """The command line is not one the command takes (an unknown flag, a missing argument)."""


class OutputError(VolumetricSRError):
    """The output cannot be written where asked."""


class ModelError(VolumetricSRError):
    """A model file or card is missing, corrupt or does not match."""


class TrainingError(VolumetricSRError):
    """Training cannot go on (a loss that is no longer a finite number)."""


class Cancelled(VolumetricSRError):
    """The user cancelled the run; nothing was written."""


class Notice(UserWarning):
    """A warning meant for the user, shown as one line (``volumetricsr: warning: ...``): the input may
    not suit the model, a GPU was skipped, a run fell back to the CPU."""
