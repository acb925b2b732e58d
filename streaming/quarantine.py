"""The trader's last line against one bad kline: set it aside, decide its hour degraded as a hold, alert.

The stream's judge (streaming/dlq.py) already refuses what breaks the contract or lacks a field the model
needs, but the trader must not depend on that: a kline that reaches it and cannot feed the model's features
(an optional column its spec uses is missing, a value not finite, out of range or negative) is
*quarantined* — kept out of the history, so the feature transform treats that symbol's hour as missing
(gap-filled, like the backtest) — and the hour is decided degraded and as a hold, with an alert naming the
reason. A feature the network turns into non-finite Q-values quarantines the hour the same way. Nothing of
this raises: one kline never puts the job into a crash loop.
"""

from __future__ import annotations

from models.alerts import Alert
from models.features import OPTIONAL_FEATURES, FeatureSpec
from models.kline import Kline, check_kline
from models.kline_record import implausible, missing_features


def required_columns(spec: FeatureSpec) -> dict[str, tuple[str, ...]]:
    """The optional contract columns each symbol's klines must carry for the features ``spec`` computes."""
    needed = {s: tuple(dict.fromkeys(OPTIONAL_FEATURES[f] for f in spec.symbol_features(s) if f in OPTIONAL_FEATURES))
              for s in spec.symbols}  # fmt: skip
    return {s: columns for s, columns in needed.items() if columns}


def unusable(kline: Kline, spec: FeatureSpec) -> str | None:
    """Why the trader cannot use ``kline`` with ``spec`` (None when it can)."""
    if kline.symbol not in spec.symbols:
        return f"{kline.symbol} is not a context symbol of the model"
    problems = [p for p in (implausible(kline), missing_features(kline, required_columns(spec))) if p is not None]
    problems += check_kline(kline)
    return "; ".join(problems) or None


def quarantine_alert(trader_id: str, batch_id: int, hour: int, symbol: str | None, reason: str) -> Alert:
    """The alert of a quarantined hour (``symbol`` None when the whole hour, not one kline, was the problem)."""
    what = f"the {symbol} kline of {hour}" if symbol else f"hour {hour}"
    return Alert("quarantined_hour", "warning",
                 f"trader {trader_id} set aside {what} ({reason}): the hour is decided degraded, as a hold",
                 f"quarantined_hour:{trader_id}:{hour}:{symbol or '*'}",
                 {"trader_id": trader_id, "batch_id": batch_id, "open_time": hour, "symbol": symbol,
                  "reason": reason})  # fmt: skip
