"""What ``closeloop_local.cli`` and the command modules it loads (ops, backfill) share, below all of them.

The error a user can fix (``CliError``), the project root, the running ``closeloop dev`` (its state file
and its stack, attached), and the aligned table every listing prints. The command modules import this, never
``cli`` (which loads them), so no import runs in a circle.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

STATE_DIR = ".closeloop"
STATE_FILE = "dev.json"
TEMPLATE_NAME = "template.yaml"


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def find_project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) that holds template.yaml."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / TEMPLATE_NAME).is_file():
            return directory
    raise CliError(f"no {TEMPLATE_NAME} in {here} or any parent directory: run closeloop inside the project")


def state_path(project_root: Path) -> Path:
    return project_root / STATE_DIR / STATE_FILE


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_dev_state(project_root: Path) -> dict[str, Any] | None:
    """The state of the ``closeloop dev`` running from ``project_root``, or None when none is running."""
    path = state_path(project_root)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not _pid_alive(int(state.get("pid", 0))):
        return None
    return state


def attached_stack() -> Any:
    """The stack of the running ``closeloop dev`` (or the one at AWS_ENDPOINT_URL), attached, not started.

    Raises CliError when there is none to attach to, or attaching fails.
    """
    from closeloop_local.stack import SHARED_STACK_NAME, LocalStack  # noqa: PLC0415 (heavy: only when attaching)

    project_root = find_project_root()
    state = read_dev_state(project_root)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    region: str | None = None
    if endpoint:
        same = state is not None and state.get("endpoint_url") == endpoint
        stack_name = str(state["stack_name"]) if same and state else SHARED_STACK_NAME
    elif state is not None:
        endpoint, stack_name, region = str(state["endpoint_url"]), str(state["stack_name"]), state.get("region")
    else:
        raise CliError(
            f"no closeloop dev is running from {project_root} and AWS_ENDPOINT_URL is not set: "
            "start `closeloop dev` in another terminal first"
        )
    stack = LocalStack(project_root, endpoint_url=endpoint, stack_name=stack_name, region=region)
    try:
        stack.attach()
    except Exception as exc:
        stack.stop()
        raise CliError(str(exc)) from exc
    return stack


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: set[int] | None = None) -> list[str]:
    """``rows`` under ``headers`` as aligned lines, indented two spaces (``right``: right-aligned columns).

    No lines when there are no rows: a listing says "none" its own way.
    """
    if not rows:
        return []
    right = right or set()
    widths = [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        text = "  ".join(
            str(cell).rjust(widths[i]) if i in right else str(cell).ljust(widths[i]) for i, cell in enumerate(cells)
        )
        return "  " + text.rstrip()

    return [line(headers), *(line(row) for row in rows)]
