"""Structured logs: one event per line, JSON when stdout is not a terminal (for log shippers),
readable key=value on a terminal. Secrets never enter log events: settings hold them as SecretStr."""

from __future__ import annotations

import atexit
import json
import logging
import sys
import threading
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog


class _Sink:
    """Collects log lines and writes them to the current sys.stdout in blocks.

    One write per line is one system call when stdout is unbuffered (PYTHONUNBUFFERED, common in
    containers), which measurably slows a node logging every paid request. Lines are written when
    256 are waiting and at least every FLUSH_INTERVAL seconds by a daemon thread; a terminal gets
    each line at once. A hard kill can lose the last fraction of a second of log lines, never a
    payment: the database, not the log, is the record."""

    FLUSH_INTERVAL = 0.2
    BLOCK = 256

    def __init__(self) -> None:
        self.tty = False  # set by configure(): isatty() is a system call, not for every line
        self.buffered = True
        self.stream = "stdout"  # looked up on sys at each write, so a replaced stream (tests) is used
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        atexit.register(self.flush)

    def write(self, line: str) -> None:
        if self.tty or not self.buffered:
            getattr(sys, self.stream).write(line + "\n")
            return
        with self._lock:
            self._lines.append(line)
            full = len(self._lines) >= self.BLOCK
        if full:
            self.flush()
        elif self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_forever, name="log-flush", daemon=True)
            self._flusher.start()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        if lines:
            try:
                out = getattr(sys, self.stream)
                out.write("\n".join(lines) + "\n")
                out.flush()
            except (OSError, ValueError):  # stdout closed or gone: logs are not worth a crash
                pass

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.FLUSH_INTERVAL)
            self.flush()


_sink = _Sink()


class _LineLogger:
    def msg(self, message: str) -> None:
        _sink.write(message)

    log = debug = info = warn = warning = error = err = critical = fatal = exception = failure = msg


def _line_logger(*args: object) -> _LineLogger:
    return _LineLogger()


def _dumps(event: dict[str, Any], **kwargs: Any) -> str:
    # orjson is several times faster than json; it refuses integers beyond 64 bits, so money is
    # logged as decimal strings (as on the wire) and anything unusual falls back to json.
    try:
        return orjson.dumps(event).decode()
    except TypeError:
        return json.dumps(event, default=str)


class _UtcStamper:
    """structlog's `TimeStamper(fmt="iso", utc=True)`, to the character (`datetime.now(timezone.utc)
    .isoformat()` with "Z" for "+00:00": microseconds floored, left out when zero), at a fraction
    of its cost: the date and time of day are formatted once per second (docs/performance.md,
    "The log line's timestamp")."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event_dict["timestamp"] = self.format(time.time_ns())
        return event_dict

    def format(self, ns: int) -> str:
        second, fraction = divmod(ns, 1_000_000_000)
        if second != self._second:
            t = time.gmtime(second)
            self._prefix = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            self._second = second
        micro = fraction // 1000
        return f"{self._prefix}.{micro:06d}Z" if micro else f"{self._prefix}Z"


def flush() -> None:
    """Writes out waiting log lines now (tests, and before a planned exit)."""
    _sink.flush()


def set_buffering(enabled: bool) -> None:
    """Off: each line is written at once by the thread that logs it (tests turn buffering off so a
    line lands in the output captured for the test that logged it, never in a later test's)."""
    _sink.flush()
    _sink.buffered = enabled


# aiohttp's server and web loggers report malformed requests (oversize headers, smuggling shapes,
# bad methods) and handler failures with a traceback quoting the request's bytes. These become one
# bounded line each, naming the error's type and never its text (docs/security.md, "Malformed
# requests in the log").
AIOHTTP_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.internal")  # the access log is off (cli/main.py)
MAX_FIELD = 80


def _bounded(value: object) -> str:
    text = str(value)
    text = "".join(ch if ch.isprintable() and ch.isascii() else "?" for ch in text[:MAX_FIELD])
    return text


def _edge_fields(record: logging.LogRecord) -> tuple[str, dict[str, object]]:
    """The event and fields of an aiohttp record, bounded: the error's type, never its text."""
    from aiohttp.http_exceptions import HttpProcessingError

    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):  # refused by the HTTP parser (400/413/431)
        return "bad_request", {"status": int(exc.code or 400), "error": type(exc).__name__, "source": record.name}
    fields: dict[str, object] = {"source": record.name}
    message = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    fields["message"] = _bounded(message)
    if exc is not None:
        fields["error"] = type(exc).__name__
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if tb is not None:  # where it was raised: a file name and line, not a traceback
            fields["at"] = f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"
    return ("http_error" if record.levelno >= logging.ERROR else "http_notice"), fields


class _Bounded(logging.Filter):
    """Rewrites each aiohttp record in place into one bounded line without a traceback, for
    whatever handler receives it (ours, the root logger's, a test's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "edge_event", None) is None:
            try:
                event, fields = _edge_fields(record)
            except Exception:  # a log line is never worth a crash
                event, fields = "http_notice", {"source": record.name}
            record.edge_event, record.edge_fields = event, fields
            record.msg = event + " " + " ".join(f"{k}={v}" for k, v in fields.items())
            record.args = ()
            record.exc_info = record.exc_text = record.stack_info = None
            if event == "bad_request" and record.levelno < logging.WARNING:
                record.levelno, record.levelname = logging.WARNING, "WARNING"  # one line per refused request
        return True


_FILTER = _Bounded()


class _AiohttpLines(logging.Handler):
    """Sends the rewritten aiohttp records to the node's structured log."""

    def __init__(self, level: int) -> None:
        super().__init__(logging.DEBUG)
        self.min_level = level

    def emit(self, record: logging.LogRecord) -> None:
        try:
            # Set by _Bounded, which runs first (a filter of the same logger): not LogRecord attributes.
            event, fields = getattr(record, "edge_event", None), getattr(record, "edge_fields", None)
            if not isinstance(event, str) or not isinstance(fields, dict):
                return
            if event != "bad_request" and record.levelno < self.min_level:
                return
            log = structlog.get_logger("channel_node.http")
            level = "warning" if event == "bad_request" else ("error" if record.levelno >= logging.ERROR else "info")
            getattr(log, level)(event, **fields)
        except Exception:  # a log line is never worth a crash
            pass


def bound_aiohttp_logs() -> None:
    """Makes aiohttp's server loggers write bounded lines without tracebacks, whoever handles them
    (idempotent; the paywall's create_app calls it, so an embedded node is covered too)."""
    for name in AIOHTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _route_aiohttp(level: int) -> None:
    bound_aiohttp_logs()
    handler = _AiohttpLines(level)
    for name in AIOHTTP_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if isinstance(h, _AiohttpLines)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)  # parse errors at debug level (bad methods) still get their line
        logger.propagate = False  # into the node's log only


def configure(log_format: str = "auto", level: int = logging.INFO, stream: str = "stdout") -> None:
    """`stream` is "stdout" for the node, "stderr" for commands whose stdout is their answer."""
    _sink.flush()
    _sink.stream = stream
    _sink.tty = getattr(sys, stream).isatty()
    json_lines = log_format == "json" or (log_format == "auto" and not _sink.tty)
    renderer = (
        structlog.processors.JSONRenderer(serializer=_dumps) if json_lines else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _UtcStamper(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_line_logger,
        cache_logger_on_first_use=False,  # so a reconfiguration (tests, CLI) takes effect everywhere
    )
    _route_aiohttp(level)
