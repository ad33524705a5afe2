"""`scripts/mutants`: mutate the critical modules, run their tests, score them, list the survivors.

Exits 1 when a mutant survives that mutation/accepted.txt does not list, when that list names a
mutant that no longer survives (it must stay true), or, on a full run, when the modules together
score under --min-score.
"""

from __future__ import annotations

import argparse
import importlib
import os
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path

from mutation.generate import Target, mutants_of
from mutation.run import BaselineError, Outcome, baseline, run, warm_up

ROOT = Path(__file__).resolve().parent.parent
_MARKS = {"killed": ".", "timed out": "T", "survived": "S"}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    os.chdir(ROOT)
    targets = _targets(args.targets, args.module)
    accepted = read_accepted(Path(args.accepted))
    every = [mutant for target in targets for mutant in mutants_of(target)]
    # An accepted survivor of these modules that is no mutant at all any more is stale on any run.
    paths = {target.path for target in targets}
    gone = {key for key in accepted if key.split(" ", 1)[0] in paths} - {mutant.key for mutant in every}
    mutants = [mutant for mutant in every if args.match in mutant.key]
    if args.since:
        changed = _changed_lines(args.since, paths)
        mutants = [mutant for mutant in mutants if mutant.line in changed.get(mutant.target.path, ())]
    full = args.sample is None and not args.module and not args.match and not args.since
    if args.sample is not None and args.sample < len(mutants):
        chosen = sorted(random.Random(args.seed).sample(range(len(mutants)), args.sample))  # noqa: S311
        mutants = [mutants[index] for index in chosen]
    if args.list:
        for mutant in mutants:
            print(f"{mutant.target.path}:{mutant.line}  {mutant.key}")
        return 0
    started = time.monotonic()
    used = [target for target in targets if any(mutant.target == target for mutant in mutants)]
    print(f"== mutants: {len(mutants)} of {len(used)} modules, {args.jobs} at a time", flush=True)
    warm_up(used, ROOT)
    allowed: dict[Target, float] = {}
    for target in used:
        try:
            seconds = baseline(target, ROOT)
        except BaselineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        # A mutant whose tests take far longer than without it made something hang: stopped, it
        # counts as killed, as the tests' own time limits would have failed it, only later.
        allowed[target] = seconds * 2 + 5
        print(f"   {target.path}: its tests take {seconds:.1f} s without a mutant", flush=True)

    def done(outcome: Outcome) -> None:
        print(_MARKS[outcome.status], end="", flush=True)

    outcomes = run(mutants, seconds_allowed=allowed.__getitem__, jobs=args.jobs, root=ROOT, done=done)
    print()
    failed = report(
        outcomes, accepted, listed_in=args.accepted, full=full, min_score=args.min_score, gone=gone
    )
    print(f"== {len(outcomes)} mutants in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


def report(
    outcomes: Sequence[Outcome],
    accepted: dict[str, str],
    *,
    listed_in: str,
    full: bool,
    min_score: float,
    gone: AbstractSet[str] = frozenset(),
) -> bool:
    """Prints the score per module and the survivors; True when the gate fails."""
    by_module: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_module[outcome.mutant.target.path].append(outcome)
    failed = False
    print(f"{'module':34} {'mutants':>8} {'killed':>7} {'accepted':>9} {'new':>4} {'score':>7}")
    for path, results in [*by_module.items(), ("all", list(outcomes))]:
        survivors = [outcome.mutant.key for outcome in results if outcome.survived]
        known = sum(key in accepted for key in survivors)
        score = 100 * (len(results) - len(survivors)) / len(results) if results else 100.0
        low = full and path == "all" and score < min_score
        failed = failed or low
        print(
            f"{path:34} {len(results):8} {len(results) - len(survivors):7} {known:9} "
            f"{len(survivors) - known:4} {score:6.1f}%{'  under ' + str(min_score) + '%' if low else ''}"
        )
    new = [outcome.mutant for outcome in outcomes if outcome.survived and outcome.mutant.key not in accepted]
    if new:
        failed = True
        print(f"\nSurvivors not in {listed_in} (add a test that catches each, or list it with why):")
        for mutant in new:
            print(f"  {mutant.target.path}:{mutant.line}\n{mutant.key}\n    why: ")
    run_keys = {outcome.mutant.key for outcome in outcomes}
    killed = {outcome.mutant.key for outcome in outcomes if not outcome.survived}
    stale = sorted(key for key in accepted if key in killed or key in gone or (full and key not in run_keys))
    if stale:
        failed = True
        print("\nAccepted survivors that no longer survive, or no longer exist (remove them):")
        for key in stale:
            print(f"  {key}")
    return failed


def read_accepted(path: Path) -> dict[str, str]:
    """The accepted survivors: each a mutant's key on a line, then an indented `why:` line."""
    accepted: dict[str, str] = {}
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    for number, line in enumerate(lines):
        if line.startswith(" "):
            continue
        why = lines[number + 1].strip() if number + 1 < len(lines) else ""
        if not why.startswith("why:") or not why.removeprefix("why:").strip():
            raise SystemExit(f"{path}: the accepted survivor {line!r} needs a `why:` line under it")
        accepted[line] = why.removeprefix("why:").strip()
    return accepted


_HUNK = re.compile(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", re.MULTILINE)


def _changed_lines(revision: str, paths: set[str]) -> dict[str, set[int]]:
    """The lines of each file, as it is now, that differ from `revision`: where a change's mutants live."""
    changed: dict[str, set[int]] = {}
    for path in paths:
        diff = subprocess.run(  # noqa: S603 - git, with a revision the developer named
            ["git", "diff", "--unified=0", revision, "--", path],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        changed[path] = {
            line
            for start, count in _HUNK.findall(diff)
            for line in range(int(start), int(start) + int(count or 1))
        }
    return changed


def _targets(spec: str, modules: Sequence[str]) -> list[Target]:
    module_name, _, attribute = spec.partition(":")
    targets: Sequence[Target] = getattr(importlib.import_module(module_name), attribute or "TARGETS")
    unknown = set(modules) - {target.path for target in targets}
    if unknown:
        raise SystemExit(f"no target for {', '.join(sorted(unknown))}; see {module_name}")
    return [target for target in targets if not modules or target.path in modules]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="scripts/mutants", description=__doc__.split("\n")[0])
    parser.add_argument("--module", action="append", default=[], help="only this module (repeatable)")
    parser.add_argument("--match", default="", help="only mutants whose key contains this text")
    parser.add_argument("--since", help="only mutants of lines changed since this git revision")
    parser.add_argument("--sample", type=int, help="run this many mutants, chosen by --seed")
    parser.add_argument("--seed", type=int, default=14, help="chooses the sample (default 14)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants at a time")
    parser.add_argument("--min-score", type=float, default=95.0, help="of all modules, on a full run")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--targets", default="mutation.targets:TARGETS", help=argparse.SUPPRESS)
    parser.add_argument("--accepted", default="mutation/accepted.txt", help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
