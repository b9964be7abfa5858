"""Errors that the CLI turns into a one-line message (no traceback unless ``verbose``)."""


class SbrunError(Exception):
    """Base class for user-facing errors: bad input, not a bug."""


class ConfigError(SbrunError, ValueError):
    """A configuration value is invalid (unknown name, sigma <= 0, steps < 1, ...)."""


class DataError(SbrunError, ValueError):
    """A dataset is missing, malformed, or does not fit the problem (shape mismatch)."""


class TrainingError(SbrunError, RuntimeError):
    """Training cannot go on (non-finite loss); the last good checkpoint is kept."""


def check_positive(name: str, value: float) -> float:
    """Return ``value`` or raise ``ConfigError`` when it is not > 0."""
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value
