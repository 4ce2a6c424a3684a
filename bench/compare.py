"""Before/after: chosen benches for two git revisions, interleaved on one broker, as a Markdown table.

    python -m bench.compare --before a76bfe7 --after HEAD --bench intake rebuild fire client memory --rounds 2
        [--args "rebuild=--n 100000"] [--own-bench memory] [--workdir .run/compare] [--keep-trees]

Each revision gets its own detached worktree under --workdir/trees with its own venv (`uv sync --frozen`: an old
revision builds with hatchling, a new one with maturin); the worktrees are removed at the end unless
--keep-trees. Both run this checkout's bench/ (copied over theirs), so the harness and its baselines are the same
code on both sides and only the scheduler differs; `--own-bench NAME` keeps a revision's own bench/NAME.py
instead (for a bench whose new version needs what the old revision lacks; old result names are read as a
fallback). Rounds interleave: round 1 runs each bench on before then after, round 2 again, and so on, so drift of
the shared machine falls on both. Every run's bench/results/<name>.json is kept under
--workdir/results/<commit>/r<round>/, its output under --workdir/logs/; the table (median of the rounds) is
printed and written to --workdir/compare.md. The broker: KAFKA_BOOTSTRAP_SERVERS, or else a local one for the
whole run (deploy/kafka-local/with-broker.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Figure:
    """One row of the table: where its value is in a bench's results JSON (first path present wins)."""

    bench: str
    label: str
    paths: tuple[tuple[str, ...], ...]
    goal: str = ""
    fmt: str = "ratio"  # ratio | rate | seconds | bytes


FIGURES = (
    Figure("fire", "B1 drain / raw transactional produce", (("ratio",),), ">= 0.8"),
    Figure("fire", "B1 fires/s", (("scheduler", "fires_per_s"),), fmt="rate"),
    Figure("fire", "B1 raw txn produce fires/s (baseline)", (("raw", "fires_per_s"),), fmt="rate"),
    Figure("rebuild", "B3 assignment -> serving / raw replay", (("ratio",),), "<= 1.5"),
    Figure("rebuild", "B3 assignment -> serving, s", (("assignment_to_serving_s",),), fmt="seconds"),
    Figure("rebuild", "B3 process start -> /readyz, s", (("start_to_ready_s",),), fmt="seconds"),
    Figure("rebuild", "B3 raw read_committed replay, s (baseline)", (("raw_replay_s",),), fmt="seconds"),
    # bench/memory.py is being reworked for issue 14: its new top-level names first, today's as the fallback
    Figure(
        "memory",
        "B4 index bytes per schedule beyond the state record",
        (("beyond_state_record_bytes",), ("DueIndex", "traced_beyond_state_record_object")),
        "<= 48",
        "bytes",
    ),
    Figure(
        "memory",
        "B4 RSS bytes per schedule",
        (("rss_per_schedule",), ("DueIndex", "rss_per_schedule")),
        fmt="bytes",
    ),
    Figure("client", "B5 schedule() / raw produce, sync", (("sync", "ratio"),), ">= 0.5"),
    Figure("client", "B5 schedule() / raw produce, async", (("async", "ratio"),), ">= 0.6"),
    Figure("intake", "B6 intake / physical floor", (("ratio",),), ">= 0.7"),
    Figure("intake", "B6 intake / raw consume", (("ratio_to_raw_consume",),)),
    Figure("intake", "B6 intake commands/s", (("scheduler_records_per_s",),), fmt="rate"),
    Figure("intake", "B6 physical floor commands/s (baseline)", (("floor_records_per_s",),), fmt="rate"),
)
BENCHES = ("fire", "rebuild", "memory", "client", "intake")


def lookup(result: dict[str, Any] | None, paths: Sequence[tuple[str, ...]]) -> float | None:
    """The number at the first of `paths` present in `result` (None if none is, or the run failed)."""
    for path in paths:
        node: Any = result
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, int | float) and not isinstance(node, bool):
            return float(node)
    return None


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "ratio":
        return f"{value:.2f}"
    if kind == "seconds":
        return f"{value:.2f}"
    return f"{value:,.0f}"  # rate, bytes


def table_rows(
    before: dict[str, list[dict[str, Any] | None]],
    after: dict[str, list[dict[str, Any] | None]],
    figures: Sequence[Figure] = FIGURES,
) -> list[list[str]]:
    """[figure, before, after, goal] per figure of the benches run: the median over rounds, the spread after it
    when the rounds differ (`1.02 (0.98..1.10)`)."""
    rows = []
    for fig in figures:
        if fig.bench not in before and fig.bench not in after:
            continue
        cells = [fig.label]
        for side in (before, after):
            values = [lookup(r, fig.paths) for r in side.get(fig.bench, [])]
            cells.append(_cell(values, fig.fmt))
        cells.append(fig.goal)
        rows.append(cells)
    return rows


def _cell(values: Sequence[float | None], kind: str) -> str:
    mid = median(values)
    present = [v for v in values if v is not None]
    text = fmt(mid, kind)
    if len(present) > 1 and min(present) != max(present):
        text += f" ({fmt(min(present), kind)}..{fmt(max(present), kind)})"
    if present and len(present) < len(values):
        text += f" [{len(values) - len(present)} failed]"
    return text


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub table, first column left-aligned and the others right-aligned, `|` in cells escaped."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# --- running -------------------------------------------------------------------------------------------------


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def find_uv() -> str:
    common = Path(git("rev-parse", "--path-format=absolute", "--git-common-dir")).parent
    for candidate in (
        os.environ.get("UV"),
        shutil.which("uv"),
        ROOT / ".tools/bin/uv",
        common / ".tools/bin/uv",
    ):
        if candidate and Path(candidate).exists():
            return str(candidate)
    raise SystemExit(
        "uv not found: run `make install` once (it bootstraps .tools/bin/uv) or set UV=/path/to/uv"
    )


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return {**env, **extra}


def prepare(rev: str, workdir: Path, uv: str, own: Sequence[str] = ()) -> Path:
    """A worktree of `rev` with its venv built and this checkout's bench/ copied in (reused if kept), except the
    benches in `own`, which keep the revision's own file."""
    tree = workdir / "trees" / rev[:12]
    if not (tree / ".git").exists():
        say(f"git worktree add {tree} {rev[:12]}")
        git("worktree", "add", "--detach", str(tree), rev)
    started = time.monotonic()
    say(f"{rev[:12]}: uv sync --frozen (a first build of the native core takes minutes)")
    env = child_env(CARGO_TARGET_DIR=str(workdir / "cargo-target"))
    done = subprocess.run(
        [uv, "sync", "--frozen"], cwd=tree, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"uv sync --frozen failed in {tree}:\n{done.stdout}\n{done.stderr}")
    say(f"{rev[:12]}: venv ready in {time.monotonic() - started:.0f}s")
    git("checkout", "--force", "HEAD", "--", "bench", cwd=tree)  # a kept tree: the revision's own files first
    skip = shutil.ignore_patterns("results", "__pycache__", *(f"{name}.py" for name in own))
    shutil.copytree(HERE, tree / "bench", dirs_exist_ok=True, ignore=skip)
    return tree


def run_bench(
    tree: Path, name: str, args: Sequence[str], keep: Path, log_path: Path
) -> dict[str, Any] | None:
    """One bench in `tree`'s venv; its results JSON copied to `keep`, None if it failed."""
    result = tree / "bench" / "results" / f"{name}.json"
    result.unlink(missing_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as out:
        code = subprocess.run(
            [str(tree / ".venv/bin/python"), "-m", f"bench.{name}", *args],
            cwd=tree,
            env=child_env(COLUMNS="150"),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        ).returncode
    if code != 0 or not result.exists():
        return None
    keep.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(result, keep)
    loaded: dict[str, Any] = json.loads(result.read_text())
    return loaded


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="git revision (e.g. a76bfe7)")
    parser.add_argument("--after", default="HEAD", help="git revision (default HEAD)")
    parser.add_argument("--bench", nargs="+", default=list(BENCHES), choices=BENCHES, metavar="NAME")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help='per bench, e.g. "rebuild=--n 100000"',
    )
    parser.add_argument("--workdir", type=Path, default=ROOT / ".run" / "compare")
    parser.add_argument(
        "--own-bench",
        nargs="+",
        default=[],
        choices=BENCHES,
        metavar="NAME",
        help="run each revision's own bench/NAME.py for these (when this harness's needs a newer API)",
    )
    parser.add_argument(
        "--keep-trees", action="store_true", help="keep the worktrees and venvs for the next run (by commit)"
    )
    return parser.parse_args(argv)


def bench_args(specs: Sequence[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for spec in specs:
        name, _, args = spec.partition("=")
        if name not in BENCHES:
            raise SystemExit(f"--args {spec!r}: {name!r} is not one of {', '.join(BENCHES)}")
        out[name] = args.split()
    return out


def say(text: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {text}", flush=True)


Results = dict[str, dict[str, list[dict[str, Any] | None]]]  # side -> bench -> one result per round


def run_rounds(args: argparse.Namespace, revs: dict[str, str], trees: dict[str, Path]) -> Results:
    """Round by round, each bench on before then after (A B A B ...), so the machine's drift falls on both."""
    extra = bench_args(args.args)
    workdir: Path = args.workdir
    results: Results = {"before": {}, "after": {}}
    for round_ in range(1, args.rounds + 1):
        for name in args.bench:
            for side in ("before", "after"):
                rev = revs[side][:12]
                started = time.monotonic()
                keep = workdir / "results" / rev / f"r{round_}" / f"{name}.json"
                log_path = workdir / "logs" / f"{rev}-r{round_}-{name}.log"
                got = run_bench(trees[side], name, extra.get(name, []), keep, log_path)
                results[side].setdefault(name, []).append(got)
                status = "ok" if got is not None else f"FAILED (see {log_path})"
                elapsed = time.monotonic() - started
                say(f"round {round_}/{args.rounds} {name} {side} ({rev}): {status} in {elapsed:.0f}s")
    return results


def report(args: argparse.Namespace, revs: dict[str, str], results: Results) -> str:
    header = ["figure", f"before ({args.before})", f"after ({args.after})", "goal"]
    text = markdown(header, table_rows(results["before"], results["after"]))
    sizes = "".join(f"; `{spec}`" for spec in args.args)
    note = (
        f"Median of {args.rounds} interleaved round(s), (min..max) when they differ; before = "
        f"{revs['before'][:12]}, after = {revs['after'][:12]}; benches: {' '.join(args.bench)}{sizes}.\n"
    )
    workdir: Path = args.workdir
    (workdir / "compare.md").write_text(text + "\n" + note)
    (workdir / "compare.json").write_text(
        json.dumps({"revisions": revs, "results": results}, indent=2) + "\n"
    )
    return text + "\n" + note


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    bench_args(args.args)  # refuse a bad --args before building anything
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):  # one local broker for every run of both revisions
        script = ROOT / "deploy/kafka-local/with-broker.sh"
        forwarded = list(sys.argv[1:] if argv is None else argv)
        os.chdir(ROOT)
        os.execv(script, [str(script), sys.executable, "-m", "bench.compare", *forwarded])
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    revs = {
        side: git("rev-parse", "--verify", f"{getattr(args, side)}^{{commit}}")
        for side in ("before", "after")
    }
    say(
        f"before {args.before} = {revs['before'][:12]}, after {args.after} = {revs['after'][:12]}; "
        f"harness {HERE}; broker {os.environ['KAFKA_BOOTSTRAP_SERVERS']}"
    )
    uv = find_uv()
    trees: dict[str, Path] = {}
    try:
        for side, rev in revs.items():
            trees[side] = prepare(rev, args.workdir, uv, args.own_bench)
        results = run_rounds(args, revs, trees)
    finally:
        if not args.keep_trees:
            for tree in trees.values():
                git("worktree", "remove", "--force", str(tree))
    print("\n" + report(args, revs, results))
    say(f"written: {args.workdir / 'compare.md'}, {args.workdir / 'compare.json'}")
    failed = any(r is None for side in results.values() for runs in side.values() for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
