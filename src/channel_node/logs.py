"""Structured logs: one event per line, JSON when stdout is not a terminal (for log shippers),
readable key=value on a terminal. Secrets never enter log events: settings hold them as SecretStr."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(log_format: str = "auto", level: int = logging.INFO) -> None:
    json_lines = log_format == "json" or (log_format == "auto" and not sys.stdout.isatty())
    renderer = structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(),  # sys.stdout looked up per logger, not frozen here
        cache_logger_on_first_use=False,  # so a reconfiguration (tests, CLI) takes effect everywhere
    )
