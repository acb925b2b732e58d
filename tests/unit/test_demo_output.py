"""The demo's output routing: the libraries' output (theirs, their loggers', Python warnings, a child process's)
goes to the log file; the demo's console and Klinestream's own warnings and errors stay on the terminal."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from klinestream.demo.output import route_library_output


def real_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """sys.stdout and sys.stderr on fds 1 and 2, as in a real process. Called in the test's body: capfd,
    started just before it, points them at its own files (it still reads what reaches the fds)."""
    import os

    monkeypatch.setattr(sys, "stdout", os.fdopen(1, "w", buffering=1, encoding="utf-8", closefd=False))
    monkeypatch.setattr(sys, "stderr", os.fdopen(2, "w", buffering=1, encoding="utf-8", closefd=False))


@contextlib.contextmanager
def root_on_stderr() -> Iterator[None]:
    """The root handler ``klinestream``'s callback installs (logging.basicConfig on stderr, INFO)."""
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_library_output_goes_to_the_log_file_and_the_demo_s_own_to_the_terminal(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_streams(monkeypatch)
    log_file = tmp_path / "demo" / "run" / "demo.log"
    child = "import sys; print('child stdout'); sys.stderr.write('Using Spark default log4j profile\\n')"
    with root_on_stderr(), route_library_output(log_file) as terminal:
        print("🏃 View run linear-seed0 at: http://127.0.0.1:5000/#/experiments/4/runs/abc")  # MLflow's print
        sys.stderr.write("Created version '1' of model 'klinestream-dqn'.\n")
        subprocess.run([sys.executable, "-c", child], check=True)  # the Spark JVM writes to the fds it inherits
        logging.getLogger("mlflow.utils.environment").warning("Failed to resolve installed pip version.")
        logging.getLogger("airflow.sdk.api.client").error("XCom not found")
        warnings.warn(
            "Passing a Python object as `python_model` causes it to be serialized using CloudPickle", stacklevel=1
        )
        logging.getLogger("klinestream.demo.live").error("ingestor failed: connection refused")
        logging.getLogger("pipelines.backfill").info("raw written symbol=BTCUSDT rows=840")
        terminal.out.write("✓ backfill (65.1 s)\n")
        assert terminal.log_file == log_file
    print("after the block")
    out, err = capfd.readouterr()

    logged = log_file.read_text()
    for line in ("View run linear-seed0", "Created version '1'", "child stdout", "Using Spark default log4j profile",
                 "Failed to resolve installed pip version", "XCom not found", "CloudPickle",
                 "ingestor failed: connection refused", "raw written symbol=BTCUSDT"):  # fmt: skip
        assert line in logged, f"{line!r} did not reach the log file"
    assert out == "✓ backfill (65.1 s)\nafter the block\n"
    assert err == "ERROR klinestream.demo.live: ingestor failed: connection refused\n"


def test_the_terminal_is_restored_even_when_the_demo_fails(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_streams(monkeypatch)
    with pytest.raises(RuntimeError, match="boom"), route_library_output(tmp_path / "demo.log"):
        print("inside")
        raise RuntimeError("boom")
    print("outside")
    out, _ = capfd.readouterr()
    assert out == "outside\n" and "inside" in (tmp_path / "demo.log").read_text()
    assert not any(isinstance(h, logging.StreamHandler) and h.level == logging.WARNING
                   for h in logging.getLogger("klinestream").handlers)  # fmt: skip
