"""Binance through python-binance, in one place: the error translation (:mod:`.errors`), the retry policy
(:mod:`.retry`), the base-URL override that points python-binance at the exchange simulator
(:mod:`.endpoints`), REST klines with one pager for the sync and async clients (:mod:`.rest`), the kline
websocket (:mod:`.websocket`) and orders (:mod:`.orders`)."""
