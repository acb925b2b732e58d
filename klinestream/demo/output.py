"""The demo's output: its progress and summary on the terminal, the libraries' output in a log file.

What the libraries print does not come through one door: MLflow logs through its own ``mlflow`` handler and
prints ("Created version", "View run") to stdout and stderr; Airflow replaces the root logger's handlers with
structlog on stdout when it is imported ("XCom not found"); Python warnings, pip's and matplotlib's notes
go through ``warnings`` and loggers; the Spark JVM, a child process, writes its log4j banner and warnings
to the file descriptors it inherited. So :func:`route_library_output` moves the process's file descriptors
1 and 2 themselves to the log file (every one of those writers, child processes included, follows), and
hands the demo new streams on the original terminal for its own console. Nothing is dropped: the log file
gets everything, and the terminal still gets the demo's progress, its summary, and every warning or error
that Klinestream's own code logs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

#: Klinestream's own packages: their warnings and errors are shown on the terminal as well.
OWN_PACKAGES = ("klinestream", "models", "adapters", "pipelines", "streaming", "simulator", "dags")


@dataclass(frozen=True)
class Terminal:
    """Streams on the terminal the command started with, while fds 1 and 2 point to the log file."""

    out: TextIO
    err: TextIO
    log_file: Path


@contextlib.contextmanager
def route_library_output(log_file: Path, own_level: int = logging.WARNING) -> Iterator[Terminal]:
    """Send everything written to fds 1 and 2 (by this process or a child it starts) to ``log_file`` until
    the block ends; yield the terminal's streams, and echo Klinestream's own records of ``own_level`` and
    above there too. Python warnings are logged (``py.warnings``), so they land in the file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = os.dup(1), os.dup(2)
    target = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    out = os.fdopen(os.dup(saved[0]), "w", buffering=1, encoding="utf-8", errors="replace")
    err = os.fdopen(os.dup(saved[1]), "w", buffering=1, encoding="utf-8", errors="replace")
    echo = logging.StreamHandler(err)
    echo.setLevel(own_level)
    echo.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in OWN_PACKAGES:
        logging.getLogger(name).addHandler(echo)
    logging.captureWarnings(True)
    os.dup2(target, 1)
    os.dup2(target, 2)
    try:
        yield Terminal(out, err, log_file)
    finally:
        for stream in (sys.stdout, sys.stderr, out, err):
            with contextlib.suppress(ValueError, OSError):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        logging.captureWarnings(False)
        for name in OWN_PACKAGES:
            logging.getLogger(name).removeHandler(echo)
        for fd in (*saved, target):
            os.close(fd)
        out.close()
        err.close()
