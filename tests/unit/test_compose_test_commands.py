"""The ``klinestream`` commands that docker-compose.yml and ``.ci/compose-test`` run parse with today's CLI.

``make compose-test`` takes most of an hour, so a renamed or removed option there would only show up in a run
nobody starts often (it still used ``backfill --start/--end/--path`` and ``promote --version``, the names the
CLI now keeps only as deprecated aliases). Each invocation is found in the script's text (with its shell
variables as written) and parsed by the real CLI, without running it; a deprecated option fails too.
"""

from __future__ import annotations

import re
import shlex

import pytest
import typer
import yaml
from typer._click.exceptions import UsageError  # the click that typer vendors

from klinestream.cli import app
from tests.readme import REPO_ROOT

SCRIPT = REPO_ROOT / ".ci" / "compose-test"
#: Shell variables of the script → a value of the shape the script gives them.
VARIABLES = {"$SYMBOLS": "BTCUSDT,ETHUSDT", "${LAKE_RANGE[0]}": "2022-11-20", "${LAKE_RANGE[1]}": "2023-01-16"}
#: The invocations, as the script writes them (after ``klinestream`` or ``--entrypoint klinestream <service>``).
INVOCATIONS = [
    'backfill --symbols "$SYMBOLS" --range "${LAKE_RANGE[0]}:${LAKE_RANGE[1]}" --source files --data-dir /data/klines',
    "promote --model 1",
]


def _script() -> str:
    return re.sub(r"\\\n\s*", "", SCRIPT.read_text())  # continuation lines joined


def _parse(words: list[str]) -> None:
    """Parse ``klinestream <words>`` as the CLI would, without invoking the command."""
    group = typer.main.get_command(app)
    with group.make_context("klinestream", list(words), resilient_parsing=False) as ctx:
        name, command, rest = group.resolve_command(ctx, [*getattr(ctx, "_protected_args", []), *ctx.args])
        assert command is not None, f"no command {name!r}"
        with command.make_context(name, rest, parent=ctx) as sub:
            deprecated = [p.opts[0] for p in command.params if getattr(p, "hidden", False)
                          and sub.params[p.name] not in (None, p.default)]  # fmt: skip
            assert not deprecated, f"klinestream {name}: deprecated option(s) {deprecated} (see its --help)"


def test_every_klinestream_command_of_the_script_is_listed_here() -> None:
    found = re.findall(r"(?:--entrypoint klinestream [\w-]+|exec -T [\w-]+ klinestream)\s+(\w[^\n;|&]*)", _script())
    assert sorted(f.strip() for f in found) == sorted(INVOCATIONS)


@pytest.mark.parametrize("invocation", INVOCATIONS)
def test_the_scripts_klinestream_commands_parse_with_todays_cli(invocation: str) -> None:
    text = invocation
    for name, value in VARIABLES.items():
        text = text.replace(name, value)
    assert "$" not in text, f"a shell variable of {invocation!r} has no sample value"
    _parse(shlex.split(text))


def test_an_unknown_or_a_deprecated_option_would_be_caught() -> None:
    with pytest.raises(UsageError, match="No such option"):
        _parse(["promote", "--modle", "1"])
    with pytest.raises(AssertionError, match="deprecated option"):
        _parse(["promote", "--version", "1"])  # the old name, still accepted with a warning
    with pytest.raises(AssertionError, match="deprecated option"):
        _parse(["backfill", "--start", "2022-11-20", "--end", "2023-01-16", "--source", "files"])


def test_the_compose_services_klinestream_commands_parse_with_todays_cli() -> None:
    """Every service of docker-compose.yml built from docker/klinestream (entrypoint ``klinestream``)."""
    services = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())["services"]
    ours = {name: spec["command"] for name, spec in services.items()
            if str(spec.get("image", "")).startswith(("klinestream-stream", "klinestream-ingest",
                                                      "klinestream-dashboard"))}  # fmt: skip
    assert {"simulator", "ingestor", "stream", "dashboard", "bot"} <= set(ours)
    for command in ours.values():  # compose's ${NAME:-default} interpolation, with the defaults
        _parse([re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(word)) for word in command])


def test_the_scripts_retrain_conf_is_valid_dag_params() -> None:
    """The conf ``.ci/compose-test`` triggers ``dqn_retrain`` with through Airflow's REST API."""
    import json

    from pipelines.retrain_config import config_from_params

    [conf] = re.findall(r"^RETRAIN_CONF='([^']*)'", SCRIPT.read_text(), flags=re.MULTILINE)
    config = config_from_params(json.loads(conf))
    assert config.train_range is not None and config.test_range is not None and config.promote
