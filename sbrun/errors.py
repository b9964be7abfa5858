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


def check_choice(name: str, value, valid) -> None:
    """Raise ``ConfigError`` naming the valid options when ``value`` is not one of them."""
    if value not in valid:
        raise ConfigError(f"unknown {name} '{value}'; valid: {', '.join(map(str, valid))}")


def one_line(e: BaseException) -> str:
    """A multi-line library message (Hydra, OmegaConf, torch) as one line.

    The first line, the first line of its cause when that adds something, and a list of
    ``Available options`` (Hydra's unknown-option message) joined by commas.
    """
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    msg = lines[0].rstrip(".") if lines else type(e).__name__
    if any(ln.startswith("Available options") for ln in lines):
        opts = []
        for ln in lines[[ln.startswith("Available options") for ln in lines].index(True) + 1:]:
            if ln.endswith(":"):  # "Config search path:" and what follows
                break
            opts.append(ln)
        msg += "; valid: " + ", ".join(opts)
    key = getattr(e, "full_key", None)  # OmegaConf errors name the option
    if key and key not in msg:
        msg += f" ({key})"
    cause = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    if cause is not None:
        first = (str(cause).strip().splitlines() or [""])[0].strip()
        if first and first not in msg:
            msg += f": {first}"
    return msg
