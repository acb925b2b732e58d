"""The MLflow adapter: tracking runs (:mod:`.tracking`), the pyfunc model (:mod:`.pyfunc`), reading the
registry (:mod:`.registry`) and moving its aliases (:mod:`.aliases`).

Kept empty on purpose: a logged model bundles this package's ``__init__`` with :mod:`.pyfunc` (see
:func:`adapters.mlflow.pyfunc.bundled_code`), so importing it must pull in nothing else.
"""
