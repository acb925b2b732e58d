"""Hyperparameter search (``klinestream tune``): an Optuna study whose objective is a purged walk-forward
inside the training period only, trials in worker processes sharing one storage, each trial a nested MLflow
run, the best configuration written as the project's training defaults with its provenance.

Modules: ``space`` (search spaces over config fields by dotted name; ``spaces/*.yaml``), ``config`` (the
study's settings, its validation folds, the guard against the walk-forward's test months), ``objective``
(train and score a configuration on the folds), ``tracking`` (MLflow parent and nested runs) and ``study``
(storage, resuming, the parallel driver, the best configuration). docs/tuning.md is the user's guide.
"""
