"""One console for log lines: Lightning's own console handlers give way to the handlers Hydra configures."""

from __future__ import annotations

import logging

# Lightning's package loggers. `lightning` always adds a console handler ("INFO: ...") and still
# propagates; `lightning.pytorch` / `lightning.fabric` add one and stop propagating when imported
# before the root logger has handlers.
LIGHTNING_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")


def log_through_root_only() -> None:
    """Print every log line once, through the root logger's handlers (Hydra's console and its log file).

    Without this, each Lightning line prints twice in a Hydra run: once by Lightning's console handler
    and once by the root handler it propagates to. Does nothing when the root logger has no handlers
    (a library user who has not configured logging keeps Lightning's own console output).
    """
    if not logging.getLogger().handlers:
        return
    for name in LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:  # the console ones; a FileHandler (a subclass) stays
                logger.removeHandler(handler)
        logger.propagate = True
