"""What every command shares: logging to stderr, one-line errors and exit statuses (0 / 1 / 2)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from spos_deploy.errors import BadInputError, SposError

log = logging.getLogger("spos_deploy")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def run(
    prog: str,
    parser: argparse.ArgumentParser,
    body: Callable[[argparse.Namespace], int | None],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse, run ``body`` and map failures to one line on stderr: 2 for bad input, 1 otherwise."""
    args = parser.parse_args(argv)
    setup_logging(getattr(args, "verbose", False))
    try:
        return int(body(args) or 0)
    except BadInputError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except SposError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the contract: one line, never a traceback
        if os.environ.get("SPOS_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"{prog}: error: {type(e).__name__}: {msg} (set SPOS_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")
    sys.stdout.flush()


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout (logs go to stderr)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
