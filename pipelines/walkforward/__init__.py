"""Walk-forward evaluation (shared/DESIGN.md §7): folds of (training window, embargo, test step), each
variant × seed trained by the retrain DAG's code, every test step backtested beside cash, buy-and-hold and
a trend rule, stitched into one out-of-sample equity curve per strategy, with bootstrap, probabilistic and
deflated Sharpe ratios, a report and MLflow runs.

Modules: ``folds`` (the calendar), ``backtests`` (agents and baselines through one environment),
``statistics`` (figures, stitching, bootstrap, PSR/DSR), ``runner`` (config, the per-(fold, variant)
task, a local parallel driver), ``summary`` (every figure), ``report`` (Markdown + PNG) and
``mlflow_runs`` (parent and nested runs).
"""
