"""The Cassandra adapter, one class per role on one shared connection (:mod:`.session`): the trade sink
(:mod:`.trade_sink`), the checkpoint store (:mod:`.checkpoints`), the operator controls (:mod:`.controls`)
and the readers of reports and the dashboard (:mod:`.reader`)."""
