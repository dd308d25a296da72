"""structlog set-up: JSON lines by default, a console format for humans."""

from __future__ import annotations

import logging
import sys

import structlog


def configure(format: str = "json", level: str = "info") -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    renderer: structlog.types.Processor
    if format == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Client libraries log request details (URLs with tokens, retries) at INFO/DEBUG.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "google", "kubernetes", "apscheduler", "kfp", "airflow_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
