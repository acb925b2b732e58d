"""The live monitor: its window arithmetic, what "trails" means, one alert per episode in event time, and a
rollback at most once per episode (also across a crash and a replay)."""

from __future__ import annotations

import pytest

from models.checkpoint import Checkpoint
from models.kline import HOUR_MS
from models.records import PositionRecord
from streaming.monitor import LiveMonitor, MonitorConfig, trailing, window_figures
from tests.trader_fakes import Alerts, FakeRegistry, MemoryCheckpoints, MemorySink

T0 = 1_672_531_200_000  # 2023-01-01 00:00 UTC
CHAMPION, SHADOW, SYMBOL = "paper-BTCUSDT", "paper-BTCUSDT.shadow", "BTCUSDT"


def mark(hour: int, equity: float, buy_hold: float = 100.0, version: str = "2", trader: str = CHAMPION
         ) -> PositionRecord:  # fmt: skip
    return PositionRecord(trader, SYMBOL, T0 + hour * HOUR_MS, version, 0.0, equity, equity, buy_hold, 0.0, 0.0,
                          equity, hour)  # fmt: skip


def by_hour(rows: list[PositionRecord]) -> dict[int, PositionRecord]:
    return {r.open_time: r for r in rows}


# --- the window's arithmetic ------------------------------------------------------------------------
def test_window_returns_are_ratios_of_the_first_and_last_rows_of_the_window() -> None:
    champion = by_hour([mark(h, e, b) for h, e, b in [(0, 50.0, 1.0), (1, 100.0, 100.0), (2, 99.0, 101.0),
                                                       (3, 97.0, 102.0), (4, 96.0, 103.0)]])  # fmt: skip
    shadow = by_hour([mark(h, e, version="3", trader=SHADOW) for h, e in [(1, 200.0), (2, 201.0), (3, 200.0),
                                                                           (4, 202.0)]])  # fmt: skip
    figures = window_figures(champion, shadow, T0 + 4 * HOUR_MS, window_hours=3)
    assert figures is not None
    assert (figures.start, figures.end, figures.hours, figures.model_version) == (T0 + HOUR_MS, T0 + 4 * HOUR_MS, 3,
                                                                                  "2")  # fmt: skip
    assert figures.champion == pytest.approx(-0.04) and figures.buy_hold == pytest.approx(0.03)
    assert figures.cash == 0.0 and figures.challenger == pytest.approx(0.01) and figures.challenger_version == "3"
    gaps = trailing(figures, MonitorConfig(window_hours=3, margin=0.01))
    assert gaps == pytest.approx({"cash": 0.04, "buy_hold": 0.07, "challenger": 0.05})


def test_a_window_with_a_missing_row_or_two_versions_is_not_judged() -> None:
    full = [mark(h, 100.0 - h) for h in range(5)]
    assert window_figures(by_hour(full), {}, T0 + 4 * HOUR_MS, 4) is not None
    assert window_figures(by_hour(full[:2] + full[3:]), {}, T0 + 4 * HOUR_MS, 4) is None  # hour 2 undecided
    swapped = [mark(0, 100.0, version="1"), *full[1:]]  # the base row is the previous version's
    assert window_figures(by_hour(swapped), {}, T0 + 4 * HOUR_MS, 4) is None
    assert window_figures(by_hour(swapped), {}, T0 + 4 * HOUR_MS, 3) is not None


def test_the_challenger_has_a_figure_only_with_a_row_at_every_hour_of_one_other_version() -> None:
    champion = by_hour([mark(h, 100.0 - h) for h in range(4)])
    end = T0 + 3 * HOUR_MS

    def challenger(rows: list[PositionRecord]) -> float | None:
        figures = window_figures(champion, by_hour(rows), end, 3)
        assert figures is not None
        return figures.challenger

    assert challenger([mark(h, 100.0, version="3", trader=SHADOW) for h in range(4)]) == 0.0
    assert challenger([mark(h, 100.0, version="3", trader=SHADOW) for h in (0, 1, 3)]) is None  # a gap
    assert challenger([mark(h, 100.0, version="3" if h < 2 else "4", trader=SHADOW) for h in range(4)]) is None
    assert challenger([mark(h, 100.0, version="2", trader=SHADOW) for h in range(4)]) is None  # the champion's own


def test_trails_means_below_every_configured_baseline_that_has_a_figure_by_more_than_the_margin() -> None:
    champion = by_hour([mark(0, 100.0, 100.0), mark(1, 97.0, 95.0)])  # -3 %, buy-and-hold -5 %
    figures = window_figures(champion, {}, T0 + HOUR_MS, 1)
    assert figures is not None and figures.challenger is None
    assert trailing(figures, MonitorConfig(margin=0.01)) is None, "it lost less than buy-and-hold"
    assert trailing(figures, MonitorConfig(margin=0.01, baselines=("cash",))) == pytest.approx({"cash": 0.03})
    assert trailing(figures, MonitorConfig(margin=0.035, baselines=("cash",))) is None, "not by more than the margin"
    assert trailing(figures, MonitorConfig(baselines=("challenger",))) is None, "no figure: nothing to trail"


# --- the monitor ----------------------------------------------------------------------------------
class Crash(BaseException):
    """A process killed at this point (nothing after it runs)."""


class CrashingCheckpoints(MemoryCheckpoints):
    """Crashes when the monitor commits batch ``at``."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def save_checkpoint(self, trader_id: str, checkpoint: Checkpoint) -> None:
        if trader_id.endswith(".monitor") and checkpoint.batch_id == self.at:
            self.at = -1
            raise Crash()
        super().save_checkpoint(trader_id, checkpoint)


#: equity by hour of a champion that loses 1 % an hour from hour 10 to 20, then flat; buy-and-hold flat
EQUITY = [100.0] * 10 + [100.0 * 0.99**k for k in range(1, 11)] + [100.0 * 0.99**10] * 20


def sink_with(equity: list[float], challenger: float | None = 100.0) -> MemorySink:
    sink = MemorySink()
    for hour, value in enumerate(equity):
        sink.write_position(mark(hour, value))
        if challenger is not None:
            sink.write_position(mark(hour, challenger, version="3", trader=SHADOW))
    return sink


def monitor(sink: MemorySink, store: MemoryCheckpoints, registry: FakeRegistry | None, alerts: Alerts,
            auto_rollback: bool = True) -> LiveMonitor:  # fmt: skip
    config = MonitorConfig(window_hours=6, margin=0.02, auto_rollback=auto_rollback)
    return LiveMonitor.start(config, CHAMPION, SYMBOL, sink, store, registry, SHADOW, alerts)


def run_batches(live: LiveMonitor, hours_per_batch: int, hours: int, first_id: int = 0) -> None:
    for batch_id, last in enumerate(range(hours_per_batch - 1, hours, hours_per_batch), start=first_id):
        live.process_batch(batch_id, T0 + last * HOUR_MS)


@pytest.mark.parametrize("hours_per_batch", [1, 4, 40])
def test_one_alert_per_episode_at_the_same_hour_whatever_the_micro_batches(hours_per_batch: int) -> None:
    alerts, registry = Alerts(), FakeRegistry()
    run_batches(monitor(sink_with(EQUITY), MemoryCheckpoints(), registry, alerts, auto_rollback=False),
                hours_per_batch, len(EQUITY))  # fmt: skip
    assert [a.kind for a in alerts] == ["champion_trailing"]
    # the window (6 steps) ending at hour 12 is the first below every baseline by more than 2 % (-2.97 %)
    assert alerts[0].key == f"champion_trailing:{CHAMPION}:2:{T0 + 12 * HOUR_MS}"
    assert alerts[0].details["gaps"] == pytest.approx({"cash": 1 - 0.99**3, "buy_hold": 1 - 0.99**3,
                                                       "challenger": 1 - 0.99**3})  # fmt: skip
    assert registry.rollbacks == [], "auto rollback is off"


def test_an_episode_ends_when_the_champion_stops_trailing_and_a_new_one_alerts_again() -> None:
    alerts = Alerts()
    twice = EQUITY[:30] + [EQUITY[29] * 0.99**k for k in range(1, 11)]  # flat for 10 hours, then losing again
    run_batches(monitor(sink_with(twice), MemoryCheckpoints(), None, alerts), 5, len(twice))
    assert [a.key.rsplit(":", 1)[1] for a in alerts] == [str(T0 + 12 * HOUR_MS), str(T0 + 32 * HOUR_MS)]


def test_auto_rollback_happens_once_with_the_figures_in_the_tags_also_after_a_crash_and_a_replay() -> None:
    alerts, registry, sink = Alerts(), FakeRegistry(), sink_with(EQUITY)
    store = CrashingCheckpoints(at=3)  # batch 3 = hours 12..15: the rollback is made, then the process dies
    live = monitor(sink, store, registry, alerts)
    with pytest.raises(Crash):
        run_batches(live, 4, len(EQUITY))
    assert len(registry.rollbacks) == 1 and registry.champion == "1"
    restarted = monitor(sink, store, registry, alerts)  # from the checkpoint of batch 2
    assert restarted.last_batch_id == 2
    run_batches(restarted, 4, len(EQUITY))  # batch 3 replayed, then the rest
    assert len(registry.rollbacks) == 1, "at most one rollback per episode"
    kinds = [a.kind for a in alerts]
    assert kinds == ["champion_trailing", "champion_rolled_back", "champion_trailing"]  # the replay re-alerts
    assert alerts[0].key == alerts[2].key, "a replay emits the same key: a sink drops the repeat"
    tags = registry.tags["2"]
    assert tags["monitor.condition"] == alerts[0].key == tags["monitor.rolled_back_condition"]
    assert (
        tags["monitor.window_start"] == "2023-01-01T06:00:00Z" and tags["monitor.window_end"] == "2023-01-01T12:00:00Z"
    )
    assert tags["monitor.window_hours"] == "6" and tags["monitor.margin"] == "0.020000"
    assert float(tags["monitor.champion_return"]) == pytest.approx(0.99**3 - 1)
    assert float(tags["monitor.challenger_return"]) == 0.0 and tags["monitor.challenger_version"] == "3"
    assert "trailed cash by" in tags["monitor.reason"]


def test_a_registry_away_is_asked_again_and_nothing_to_roll_back_to_is_said_once() -> None:
    alerts, registry = Alerts(), FakeRegistry(unavailable=1)
    run_batches(monitor(sink_with(EQUITY), MemoryCheckpoints(), registry, alerts), 4, len(EQUITY))
    assert len(registry.rollbacks) == 1 and registry.champion == "1"  # asked again at the next batch
    alerts, registry = Alerts(), FakeRegistry(previous=None)
    run_batches(monitor(sink_with(EQUITY), MemoryCheckpoints(), registry, alerts), 4, len(EQUITY))
    assert [a.kind for a in alerts] == ["champion_trailing", "champion_rolled_back"]
    assert alerts[1].severity == "error" and "nothing to roll back to" in alerts[1].message


def test_no_rollback_when_the_champion_already_moved() -> None:
    alerts, registry = Alerts(), FakeRegistry(champion="5")
    run_batches(monitor(sink_with(EQUITY), MemoryCheckpoints(), registry, alerts), 4, len(EQUITY))
    assert registry.rollbacks == [] and [a.kind for a in alerts] == ["champion_trailing"]


def test_a_replayed_batch_id_is_skipped_and_an_idle_stream_reads_nothing() -> None:
    live = monitor(sink_with(EQUITY), MemoryCheckpoints(), None, Alerts())
    assert live.process_batch(0, T0 + 5 * HOUR_MS).hours == 6
    assert live.process_batch(0, T0 + 5 * HOUR_MS).skipped
    assert live.process_batch(1, T0 + 5 * HOUR_MS).hours == 0
    assert live.process_batch(2, None).hours == 0
