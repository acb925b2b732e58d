"""Every command in README.md is exercised by a named test or by a line of ``.ci/run``.

The commands are read from the README itself: every line of every ```bash block, and every inline code
span that starts with ``make``, ``klinestream``, ``airflow``, ``docker`` or ``cp``. A command added to the
README without an entry here fails this test; so does an entry whose test function or CI line is gone.
"""

from __future__ import annotations

import ast
import re
from functools import cache

import pytest

from tests.readme import README, REPO_ROOT, all_commands, bash_blocks

CI_RUN = REPO_ROOT / ".ci" / "run"
WORKING = "tests/integration/test_readme_working_with_it.py::"
CONVENTIONS = "tests/unit/test_cli_conventions.py::"

#: Each ```bash command → what runs it: "tests/<file>.py::<test function>" or "ci: <a line of .ci/run>".
BASH_COMMANDS: dict[str, str] = {
    "make demo": "ci: make demo",
    "make test": "ci: make test",
    "make up": "ci: make up",
    "make status": "ci: make status",
    "make down": "ci: make down || true",
    "klinestream backfill --symbols BTCUSDT,ETHUSDT --range 2023-01-01:2023-02-01 --source files "
    "--data-dir ~/klines": WORKING
    + "test_readme_backfill_then_validate_put_january_2023_of_two_symbols_into_the_validated_lake",
    "klinestream validate --symbols BTCUSDT,ETHUSDT --range 2023-01-01:2023-02-01": WORKING
    + "test_readme_backfill_then_validate_put_january_2023_of_two_symbols_into_the_validated_lake",
    "klinestream train --variant lstm --train 2021-01-01:2022-01-01 --test 2023-01-01:2023-02-01 --seed 0 "
    "--data-dir ~/klines --register": WORKING
    + "test_readme_train_registers_an_lstm_challenger_and_promote_auto_makes_it_champion",
    "klinestream promote --auto": WORKING
    + "test_readme_train_registers_an_lstm_challenger_and_promote_auto_makes_it_champion",
    "klinestream simulator --data-dir ~/klines --start 2023-01-01 --speed 10": WORKING
    + "test_readme_simulator_serves_rest_and_websocket_and_ingest_publishes_closed_klines_to_kafka",
    "klinestream ingest": WORKING
    + "test_readme_simulator_serves_rest_and_websocket_and_ingest_publishes_closed_klines_to_kafka",
    "klinestream stream": WORKING + "test_readme_stream_trades_the_champion_on_the_ingested_klines_into_cassandra",
    "airflow dags unpause klines_backfill": "tests/integration/test_readme_airflow_backfill.py::"
    "test_readme_airflow_backfill_create_runs_the_hours_on_the_stack_and_fills_its_lake",
    "airflow backfill create --dag-id klines_backfill --from-date 2023-01-10T00:00:00+00:00 "
    "--to-date 2023-01-10T03:00:00+00:00": "tests/integration/test_readme_airflow_backfill.py::"
    "test_readme_airflow_backfill_create_runs_the_hours_on_the_stack_and_fills_its_lake",
    "make lint": "ci: make lint",
    "make test-unit": "ci: make test",  # `make test` = test-unit, then test-integration (checked below)
    "make bench": "ci: make bench",
}

#: Inline `code` commands of the README's prose → what runs it, or "not run: <why>".
INLINE_COMMANDS: dict[str, str] = {
    "make demo": "ci: make demo",
    "make dashboard": "tests/integration/test_make_dashboard.py::"
    "test_make_dashboard_serves_the_page_and_the_summary_of_the_keyspace",
    "make install": "ci: make install",
    "klinestream backfill": WORKING
    + "test_readme_backfill_then_validate_put_january_2023_of_two_symbols_into_the_validated_lake",
    "airflow backfill create": "tests/integration/test_readme_airflow_backfill.py::"
    "test_readme_airflow_backfill_create_runs_the_hours_on_the_stack_and_fills_its_lake",
    "make compose-check": "ci: make compose-check",
    "make compose-test": "not run: it builds every image and runs the whole compose stack, too long for "
    ".ci/run; run by hand (its output gives each phase's wall time and each image's size)",
    "make test": "ci: make test",
    "klinestream stack up": "ci: make up",  # `make up` = klinestream stack up
    "klinestream stream": WORKING + "test_readme_stream_trades_the_champion_on_the_ingested_klines_into_cassandra",
    "klinestream kill-switch on": "tests/integration/test_kill_switch_cli.py::"
    "test_kill_switch_on_then_off_is_seen_by_traders",
    "klinestream promote --model N | --rollback | --auto": "tests/integration/test_mlflow_registry.py::"
    "test_the_promote_command_moves_gates_and_rolls_back_the_champion",
    "klinestream stack status": CONVENTIONS + "test_stack_status_exits_1_with_a_service_down_and_says_so_in_json",
    "klinestream config show": CONVENTIONS + "test_config_show_masks_secrets_in_text_and_json",
    "klinestream models": "tests/integration/test_cli_mlflow.py::test_models_json_carries_the_figures_of_the_text",
    "klinestream --install-completion": CONVENTIONS
    + "test_install_completion_writes_a_bash_completion_that_lists_the_commands",
    "klinestream demo --keep-running": "not run: it serves the dashboard until Ctrl-C; CI's `make demo` runs the "
    "same demo to its summary, and tests/integration/test_make_dashboard.py serves the dashboard",
    "klinestream stack up live": "tests/integration/test_live_supervised.py::"
    "test_a_supervised_stream_killed_with_sigkill_is_restarted_and_writes_each_decision_once",
    "klinestream bot": "not run: as a command it needs a Telegram token and chat; its application is run against "
    "the Bot API stand-in by tests/integration/test_telegram_alerts.py and tests/unit/test_telegram.py",
    "cp .env.example .env": "not run: `make compose-test` writes its own env file with fresh secrets "
    "(var/compose-test/compose.env) instead of a .env with .env.example's placeholders; `make compose-check` "
    "validates the compose file with .env.example",
    # .ci/compose-test runs `docker compose ... up -d` and `down -v` on docker-compose.yml (+ docker/compose.test.yml)
    "docker compose up -d": "not run: `make compose-test` (run by hand, too long for .ci/run) runs it on "
    "docker-compose.yml with the stand-ins of docker/compose.test.yml; `make compose-check` (ci) validates the file",
    "docker compose down -v": "not run: `make compose-test` (run by hand, too long for .ci/run) ends with it",
}

_INLINE = re.compile(r"`((?:make|klinestream|airflow|docker|cp) [^`]+)`")


def inline_commands(text: str) -> list[str]:
    """Inline code spans of the prose (outside fenced blocks) that are commands."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return sorted(set(_INLINE.findall(prose)))


@cache
def _test_functions(path: str) -> frozenset[str]:
    tree = ast.parse((REPO_ROOT / path).read_text())
    return frozenset(n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_"))


def _ci_lines() -> set[str]:
    return {line.strip() for line in CI_RUN.read_text().splitlines()}


def check_reference(command: str, where: str) -> None:
    if where.startswith("ci: "):
        assert where[4:] in _ci_lines(), f"{command!r}: .ci/run has no line {where[4:]!r}"
    elif where.startswith("not run: "):
        assert len(where) > 40, f"{command!r}: say why it is not run"
    else:
        path, _, name = where.partition("::")
        assert (REPO_ROOT / path).is_file(), f"{command!r}: no test file {path}"
        assert name in _test_functions(path), f"{command!r}: {path} has no test function {name}"


def test_the_readme_has_the_bash_blocks_this_mapping_was_written_for() -> None:
    assert len(bash_blocks()) >= 4
    assert "make demo" in all_commands() and "klinestream stream" in all_commands()


@pytest.mark.parametrize("command", all_commands(), ids=str)
def test_every_readme_bash_command_is_exercised(command: str) -> None:
    assert command in BASH_COMMANDS, f"README command {command!r} is run by no test or CI step: add one, then map it"
    check_reference(command, BASH_COMMANDS[command])


@pytest.mark.parametrize("command", inline_commands(README.read_text()), ids=str)
def test_every_inline_readme_command_is_exercised_or_says_why_not(command: str) -> None:
    assert command in INLINE_COMMANDS, f"README command `{command}` is mapped to no test, CI step or reason"
    check_reference(command, INLINE_COMMANDS[command])


def test_no_mapping_entry_outlives_its_readme_command() -> None:
    assert sorted(set(BASH_COMMANDS) - set(all_commands())) == []
    assert sorted(set(INLINE_COMMANDS) - set(inline_commands(README.read_text()))) == []


def test_make_test_runs_the_unit_then_the_integration_half_and_nothing_twice() -> None:
    makefile = (REPO_ROOT / "Makefile").read_text()
    recipe = re.search(r"^test: .*?\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe is not None
    lines = [line.strip().lstrip("@") for line in recipe.group(1).splitlines()]
    assert lines == ["$(MAKE) --no-print-directory test-unit", "$(MAKE) --no-print-directory test-integration"]
    assert '$(BIN)/pytest -m "not integration"' in makefile and "$(BIN)/pytest -m integration" in makefile


def test_the_reference_checker_rejects_a_missing_test_and_a_missing_ci_line() -> None:
    with pytest.raises(AssertionError, match="has no test function"):
        check_reference("x", "tests/unit/test_readme_commands.py::test_that_does_not_exist")
    with pytest.raises(AssertionError, match=r"\.ci/run has no line"):
        check_reference("x", "ci: make something-else")
    with pytest.raises(AssertionError, match="no test file"):
        check_reference("x", "tests/unit/no_such_file.py::test_x")


def test_inline_commands_skip_fenced_blocks() -> None:
    text = "Run `make up` then\n```bash\nmake `klinestream x`\n```\nand `klinestream demo`.\n"
    assert inline_commands(text) == ["klinestream demo", "make up"]


def test_bash_commands_drop_comments_and_blank_lines() -> None:
    from tests.readme import bash_blocks as blocks

    text = "```bash\nmake demo    # the demo\n\n# a note\nmake test\n```\n```text\nmake no\n```\n"
    assert blocks(text) == [["make demo", "make test"]]
