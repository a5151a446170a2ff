"""User errors: mistakes a person can fix, reported as one line; anything else is a bug, with its traceback.

Library code raises a `UserError` (or one of its subclasses) where the input or the set-up is wrong:
a silent prompt, a missing file, a checkpoint that is not ours, an unknown language. Every entry
point (train.py, infer.py, prepare.py, `python -m valle.<x>`) runs under `exit_on_user_error`, which
prints such a message alone on stderr and exits with status 1. `HYDRA_FULL_ERROR=1`, the switch
Hydra users already know, shows the traceback too.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

FULL_ERROR_ENV = "HYDRA_FULL_ERROR"
USER_ERROR_STATUS = 1

P = ParamSpec("P")
R = TypeVar("R")


class UserError(Exception):
    """A mistake in the input, the configuration or the set-up; the message names it and the fix."""


class ConfigError(UserError, ValueError):
    """A bad value: a setting, a text, a file's content. A ValueError too, for callers that catch those."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist. A FileNotFoundError too."""


class SetupError(UserError, RuntimeError):
    """A program, package or weights file the task needs is missing or unusable. A RuntimeError too."""


def one_line(error: BaseException) -> str:
    """The error's message on one line (a multi-line message's lines joined), as the user reads it."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


def user_message(error: BaseException) -> str | None:
    """The one-line message of a user error; None for anything else (a bug).

    Besides `UserError`, a mandatory config value left out (`ckpt: ???`) is the user's to give, and so
    is a value a config schema cannot take (`min_seconds=abc` for a float: omegaconf's ValidationError,
    or its ConfigTypeError for a value where a group of settings belongs).
    """
    if isinstance(error, UserError):
        return one_line(error)
    omegaconf_errors = sys.modules.get("omegaconf.errors")  # not imported: this module stays dependency-free
    if omegaconf_errors is None:
        return None
    key = getattr(error, "full_key", None) or getattr(error, "key", None)
    if isinstance(error, omegaconf_errors.MissingMandatoryValue):
        key = key or "a mandatory value"
        return f"{key} is required: give {key}=... on the command line"
    if isinstance(error, (omegaconf_errors.ValidationError, omegaconf_errors.ConfigTypeError)):
        reason = str(getattr(error, "msg", "") or error).splitlines()[0]
        return f"{key or 'a setting'}: {reason}; give a value of that type on the command line"
    return None


def exit_on_user_error(function: Callable[P, R]) -> Callable[P, R]:
    """Run an entry point; a user error prints `error: MESSAGE` on stderr and exits with status 1.

    Other exceptions (bugs) propagate with their traceback, and so do user errors when the environment
    sets HYDRA_FULL_ERROR=1. Under `@hydra.main` this decorator goes below it, on the task function,
    because Hydra catches what the task raises.
    """

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except Exception as error:
            message = user_message(error)
            if message is None or os.environ.get(FULL_ERROR_ENV) == "1":
                raise
            print(f"error: {message}", file=sys.stderr, flush=True)
            sys.exit(USER_ERROR_STATUS)

    return run
