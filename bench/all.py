"""`make bench`: every benchmark in order (B1 before B2, which reads B1's rate), each with its same-run baseline.

Each one also runs alone (`python -m bench.<name> --help`); results land in bench/results/<name>.json.
"""

from __future__ import annotations

import importlib
import sys
import time

from bench.common import console

ORDER = (
    "fire",
    "sustained",
    "burst",
    "rebuild",
    "memory",
    "client",
    "intake",
    "failover",
    "startup",
    "recurring",
    "consumers",
)


def main() -> int:
    failed = []
    for name in ORDER:
        console.rule(f"bench.{name}")
        started = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        try:
            if name == "consumers":
                module.main()  # parses sys.argv: none given, its defaults
            else:
                module.main([])
        except Exception as exc:  # one broken bench must not hide the others' figures
            console.print(f"[red]bench.{name} failed: {type(exc).__name__}: {exc}")
            failed.append(name)
        console.print(f"bench.{name}: {time.monotonic() - started:.0f}s")
    if failed:
        console.print(f"[red]failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
