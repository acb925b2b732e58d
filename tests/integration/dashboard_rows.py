"""Three days of one trader's rows (and a second trader's day) for the dashboard's tests, with their klines.

``write_trading_days`` goes through the real sink API (:class:`adapters.cassandra.trade_sink.CassandraTradeSink`):
decisions on model version 3, then a hot swap to version 4 at :data:`SWAP_HOUR` (``swapped_from`` set, as the
stream writes it), filled buys at the troughs and sells at the crests of the synthetic price, two orders the
risk checks rejected (with their reasons), and the account marked every hour. ``write_klines`` puts the same
hours' klines in a kline lake, all but the last :data:`HOURS_NOT_IN_LAKE` (the lake lags the stream).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from models.kline import HOUR_MS
from models.synthetic import synthetic_klines

T0 = 1_672_531_200_000  # 2023-01-01 00:00 UTC
HOURS = 72
TRADER, SHADOW, SYMBOL = "demo-dashboard-test", "shadow-dashboard-test", "BTCUSDT"
FIRST_VERSION, VERSION = "3", "4"
SWAP_HOUR = 40
REJECTED = {44: ("BUY", "max_position"), 58: ("SELL", "kill_switch")}
HOURS_NOT_IN_LAKE = 2
CAPITAL = 100_000.0


def klines(hours: int = HOURS) -> pd.DataFrame:
    """The traded symbol's synthetic klines (a 24-hour sine): the prices the decisions see."""
    frame = synthetic_klines(hours, symbols=(SYMBOL,), traded_symbol=SYMBOL, start_ms=T0, amplitude=0.03)
    return frame[frame["symbol"] == SYMBOL].reset_index(drop=True)


def write_klines(lake: Path, hours: int = HOURS) -> pd.DataFrame:
    """The klines of all but the last HOURS_NOT_IN_LAKE hours into the lake's validated zone; returns them."""
    from adapters.lake import write_range

    frame = klines(hours).iloc[: hours - HOURS_NOT_IN_LAKE]
    write_range(lake, "validated", frame, T0, T0 + hours * HOUR_MS, symbols=[SYMBOL])
    return frame


def _action(hour: int, units: float) -> int:
    """Buy at the troughs of the 24-hour cycle, sell what is held at the crests."""
    wanted = {17: 1, 18: 1, 5: 2, 6: 2}.get(hour % 24, 0)
    return 0 if wanted == 2 and units <= 0 else wanted


def write_trading_days(sink: Any, hours: int = HOURS, first_hour: int = 0, trader: str = TRADER) -> dict[str, Any]:
    """Rows of ``trader`` for hours ``first_hour .. hours-1``; returns what was written (counts, equity path)."""
    from models.records import DecisionRecord, OrderRecord, PositionRecord, client_order_id

    closes = klines(hours)["close"].to_numpy()
    units, cash, filled, equity = 0.0, CAPITAL, {"BUY": 0, "SELL": 0}, []
    for hour in range(hours):  # the account is replayed from hour 0, rows are written from first_hour
        t, price = T0 + hour * HOUR_MS, float(closes[hour])
        version = VERSION if hour >= SWAP_HOUR else FIRST_VERSION
        action = _action(hour, units)
        side = {1: "BUY", 2: "SELL"}.get(action)
        if hour in REJECTED:
            side, action = REJECTED[hour][0], 1 if REJECTED[hour][0] == "BUY" else 2
        order_id = client_order_id(trader, version, SYMBOL, t) if side else None
        status = None
        if side is not None and order_id is not None:
            reason = REJECTED[hour][1] if hour in REJECTED else None
            status = "rejected" if reason else "filled"
            fee = price * 0.001 if status == "filled" else 0.0
            if status == "filled":
                units, cash = (units + 1, cash - price - fee) if side == "BUY" else (units - 1, cash + price - fee)
                filled[side] += 1 if hour >= first_hour else 0
            qty = 1.0 if status == "filled" else 0.0
            if hour >= first_hour:
                sink.write_order(OrderRecord(trader, SYMBOL, t, order_id, version, side, 1.0, price, status, reason,
                                             qty, price if qty else 0.0, fee, "paper", None, hour))  # fmt: skip
        equity.append(cash + units * price)
        if hour < first_hour:
            continue
        swapped = FIRST_VERSION if hour == SWAP_HOUR else None
        sink.write_decision(DecisionRecord(trader, SYMBOL, t, version, action, action, 0.1, 0.2 if action == 1 else 0.0,
                                           0.3 if action == 2 else 0.0, price, 0.01, False, hour * 3, False, True, hour,
                                           order_id, status, swapped))  # fmt: skip
        sink.write_position(PositionRecord(trader, SYMBOL, t, version, units, cash, equity[-1],
                                           CAPITAL * price / float(closes[0]), 0.0, 0.0, CAPITAL, hour))  # fmt: skip
    sink.flush()
    buy_hold = CAPITAL * float(closes[-1]) / float(closes[0])
    return {"buys": filled["BUY"], "sells": filled["SELL"], "equity": equity[-1], "equity_path": equity,
            "buy_hold": buy_hold, "last_hour": T0 + (hours - 1) * HOUR_MS}  # fmt: skip
