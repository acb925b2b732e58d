"""``airflow standalone`` whose scheduler and triggerer run without their task-log servers.

Airflow's ``serve-logs`` servers (one in the scheduler, one in the triggerer) bind every interface, and no
setting changes their address. On one machine they are not needed: the API server reads task logs from
the log folder the components share. ``airflow standalone`` has no option to skip them, so the local stack
starts it through this launcher (``python -m klinestream.stack.airflow_standalone``), which passes
``--skip-serve-logs`` to those two components; then the only port Airflow opens is its API server's, on
the host of ``KLINESTREAM_AIRFLOW_API_URL`` (127.0.0.1). tests/integration/test_stack_auth.py checks that
no process of the stack listens beyond loopback.
"""

from __future__ import annotations

import sys
from typing import Any

#: The components that would otherwise start a log server.
LOG_SERVING = ("scheduler", "triggerer")
SKIP_FLAG = "--skip-serve-logs"


def component_command(command: list[str]) -> list[str]:
    """``command`` of a standalone component, with :data:`SKIP_FLAG` for those in :data:`LOG_SERVING`."""
    if command[:1] and command[0] in LOG_SERVING and SKIP_FLAG not in command:
        return [*command, SKIP_FLAG]
    return command


def main() -> None:
    import os

    os.umask(0o077)  # the generated admin password file (and every file Airflow writes) private to its owner
    from airflow.__main__ import main as airflow_main
    from airflow.cli.commands import standalone_command

    base = standalone_command.SubCommand

    class SubCommand(base):  # type: ignore[misc,valid-type]
        def __init__(self, parent: Any, name: str, command: list[str], env: dict[str, str]) -> None:
            super().__init__(parent, name, component_command(command), env)

    standalone_command.SubCommand = SubCommand  # type: ignore[misc]  # looked up by StandaloneCommand.run at call time
    sys.argv = ["airflow", "standalone"]
    airflow_main()


if __name__ == "__main__":
    main()
