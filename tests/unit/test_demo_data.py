"""Where the demo's klines come from: Binance when it answers, else kline files, else labelled synthetic."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from klinestream.demo.data import choose_source, exported, source_env
from klinestream.demo.training import retrain_conf
from models.kline import HOUR_MS
from models.settings import load_settings
from pipelines.backfill import fetch_from_source

START, HOURS = 1_672_531_200_000, 48
END = START + HOURS * HOUR_MS


def test_without_binance_or_files_the_demo_writes_synthetic_klines_and_says_so(tmp_path: Path) -> None:
    settings = load_settings(data_dir=None)

    choice = choose_source(settings, None, tmp_path, START, END, probe=lambda: False)

    assert choice.kind == "synthetic" and "SYNTHETIC" in choice.label and "not market data" in choice.label
    assert choice.source.kind == "files" and choice.source.path is not None
    frame = fetch_from_source(choice.source, "BTCUSDT", START, END)
    assert list(frame["open_time"]) == list(range(START, END, HOUR_MS))


def test_kline_files_are_used_when_binance_is_unreachable_and_binance_when_it_answers(tmp_path: Path) -> None:
    settings = load_settings(data_dir=None)
    files = choose_source(settings, None, tmp_path, START, END, probe=lambda: False).source.path
    assert files is not None

    from_files = choose_source(settings, files, tmp_path / "other", START, END, probe=lambda: True)
    from_env = choose_source(load_settings(data_dir=files), None, tmp_path / "other", START, END, probe=lambda: False)
    from_binance = choose_source(settings, None, tmp_path / "other", START, END, probe=lambda: True)

    assert (from_files.kind, from_files.source.path) == ("files", files), "--data-dir wins without a probe"
    assert (from_env.kind, from_env.source.path) == ("files", files)
    assert from_binance.kind == "binance" and from_binance.source.kind == "binance"


def test_a_folder_without_the_symbols_falls_back_to_synthetic(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    choice = choose_source(load_settings(), empty, tmp_path, START, END, probe=lambda: True)
    assert choice.kind == "synthetic"


def test_dag_tasks_see_the_demo_settings_only_inside_the_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KLINESTREAM_BINANCE_BASE_URL", "http://elsewhere")
    settings = load_settings(lake_dir=tmp_path / "lake", mlflow_model_name="demo-model")
    choice = choose_source(settings, None, tmp_path, START, END, probe=lambda: False)

    with exported(source_env(settings, choice)):
        inner = load_settings()
        assert "KLINESTREAM_BINANCE_BASE_URL" not in os.environ
    assert inner.lake_root == tmp_path / "lake" and inner.mlflow_model_name == "demo-model"
    assert inner.data_dir == choice.source.path
    assert os.environ["KLINESTREAM_BINANCE_BASE_URL"] == "http://elsewhere"


def test_quick_retrain_is_short_and_overrides_win() -> None:
    quick = retrain_conf("2022-09-15:2023-01-01", "2023-01-01:2023-02-01", quick=True)
    full = retrain_conf("2021-01-01:2022-01-01", "2023-01-01:2023-02-01", quick=False)
    tiny = retrain_conf("a:b", "c:d", quick=True, overrides={"episode_hours": 48})

    assert quick["variants"] == ["linear", "lstm"] and quick["promote"] is True
    assert quick["episodes"] * quick["episode_hours"] * quick["n_envs"] <= 1_000
    assert "episodes" not in full and tiny["episode_hours"] == 48
