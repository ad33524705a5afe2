"""`scripts/mutants`: mutate the critical modules, run their tests, score them, list the survivors.

With no option, CI's gate: every mutant that the last full run of its module (mutation/record.json)
did not run, which includes every mutant of code changed since, and a sample of the others that
changes with each commit. `--full` runs them all, and records each module whose run passes.

Exits 1 when a mutant survives that mutation/accepted.txt does not list, when that list names a
mutant that no longer survives (it must stay true), when more mutants are new to the record than
--most (run --full), or, on a full run, when the modules' recorded runs together score under
--min-score.
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from mutation.generate import Mutant, Target, mutants_of
from mutation.record import FullRun, Record, digest
from mutation.run import BaselineError, Outcome, baselines, run, warm_up

ROOT = Path(__file__).resolve().parent.parent
_MARKS = {"killed": ".", "timed out": "T", "survived": "S"}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    root = Path(args.root).resolve()
    os.chdir(root)
    sys.path.insert(0, str(root))
    targets = _targets(args.targets, args.module)
    accepted = read_accepted(Path(args.accepted))
    record = Record(Path(args.record))
    every = _mutants(targets, args.jobs)
    # An accepted survivor of these modules that is no mutant at all any more is stale on any run.
    paths = [target.path for target in targets]
    gone = {key for key in accepted if key.split(" ", 1)[0] in paths} - {mutant.key for mutant in every}
    candidates = [mutant for mutant in every if args.match in mutant.key]
    complete: set[str] = set()
    if args.full:
        if args.match or args.since:
            raise SystemExit("--full runs every mutant of its modules: without --match or --since")
        mutants, complete = candidates, set(paths)
    elif args.since:
        changed = _changed_lines(args.since, paths)
        mutants = [mutant for mutant in candidates if mutant.line in changed.get(mutant.target.path, ())]
    else:
        chosen = _gate_choice(candidates, targets, record, accepted, args)
        if chosen is None:
            return 1
        mutants = chosen
    if args.list:
        for mutant in mutants:
            print(f"{mutant.target.path}:{mutant.line}  {mutant.key}")
        return 0
    started = time.monotonic()
    used = [target for target in targets if any(mutant.target == target for mutant in mutants)]
    print(f"== mutants: {len(mutants)} of {len(used)} modules, {args.jobs} at a time", flush=True)
    warm_up(used, root)
    try:
        known = baselines(used, root, args.jobs)
    except BaselineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for target, measured in known.items():
        print(f"   {target.path}: {len(measured.tests)} tests, {measured.total:.1f} s without a mutant")

    def done(outcome: Outcome) -> None:
        print(_MARKS[outcome.status], end="", flush=True)

    outcomes = run(mutants, baselines=known.__getitem__, jobs=args.jobs, root=root, done=done)
    print()
    failed = report(outcomes, accepted, listed_in=args.accepted, complete=complete, gone=gone)
    if args.full:
        recorded = [path for path in paths if path in complete]
        _record(record, outcomes, recorded, accepted)
        failed = _low_score(record, paths, args.min_score) or failed
    print(f"== {len(outcomes)} mutants in {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


def _mutants(targets: Sequence[Target], jobs: int) -> list[Mutant]:
    """Every mutant of the targets, in order, made `jobs` modules at a time: libcst takes seconds
    for a large module."""
    if jobs < 2 or len(targets) < 2:
        return [mutant for target in targets for mutant in mutants_of(target)]
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
        return [mutant for mutants in pool.map(mutants_of, targets) for mutant in mutants]


# The seed of the sample CI ran before there were records (scripts/mutants --sample 200 --seed 14).
_UNRECORDED_SEED = 14


def _gate_choice(
    candidates: list[Mutant],
    targets: Sequence[Target],
    record: Record,
    accepted: dict[str, str],
    args: argparse.Namespace,
) -> list[Mutant] | None:
    """CI's mutants: those new to the record, and a sample of the others, killed when recorded, of
    one module (one baseline to run); None, having said why, when more are new than --most.

    A module never run in full has no record to tell its new mutants by: until its full run is
    recorded, CI runs a fixed sample of its mutants (--sample of them, by seed 14 unless --seed), as
    it did of every module before there were records, and says so each time. Fixed, so that its
    survivors can be reviewed once rather than met anew at each commit."""
    unrecorded = sorted({mutant.target.path for mutant in candidates} - record.runs.keys())
    recorded = [mutant for mutant in candidates if mutant.target.path in record.runs]
    new = [mutant for mutant in recorded if not record.has_seen(mutant)]
    killed = [mutant for mutant in candidates if record.has_seen(mutant) and mutant.key not in accepted]
    chance = random.Random(args.seed if args.seed is not None else _head_seed())  # noqa: S311
    modules = sorted({mutant.target.path for mutant in killed})
    sampled_module = chance.choice(modules) if modules else None
    pool = [mutant for mutant in killed if mutant.target.path == sampled_module]
    sample = chance.sample(pool, min(args.sample, len(pool)))
    fixed = random.Random(args.seed if args.seed is not None else _UNRECORDED_SEED)  # noqa: S311
    for path in unrecorded:
        of_module = [mutant for mutant in candidates if mutant.target.path == path]
        sample += fixed.sample(of_module, min(args.sample, len(of_module)))
    print(f"== the record ({args.record}): the last full run of each module")
    head = _git("rev-parse", "HEAD")
    new_by_module = Counter(mutant.target.path for mutant in new)
    sampled_by_module = Counter(mutant.target.path for mutant in sample)
    for target in targets:
        full = record.runs.get(target.path)
        if full is None:
            when = f"never run in full (record it: scripts/mutants --full --module {target.path})"
        else:
            when = f"{full.date}{f' at {full.commit[:10]}' if full.commit else ''}, {full.score:.1f}%"
            if head and full.commit:
                behind = _git("rev-list", "--count", f"{full.commit}..HEAD")
                when += f", {behind} commits ago" if behind else ", not in this history"
        print(
            f"   {target.path:34} {when}; {new_by_module[target.path]} new, "
            f"{sampled_by_module[target.path]} sampled"
        )
    if len(new) > args.most:
        behind_modules = " ".join(f"--module {path}" for path, _ in new_by_module.most_common())
        print(
            f"\nThe record is behind: {len(new)} mutants are new to it, more than CI runs "
            f"(--most {args.most}). Run them all and record them, then commit {args.record}:\n"
            f"  scripts/mutants --full {behind_modules}"
        )
        return None
    chosen_ones = {id(mutant) for mutant in [*new, *sample]}
    return [mutant for mutant in candidates if id(mutant) in chosen_ones]


def report(
    outcomes: Sequence[Outcome],
    accepted: dict[str, str],
    *,
    listed_in: str,
    complete: AbstractSet[str] = frozenset(),
    gone: AbstractSet[str] = frozenset(),
) -> bool:
    """Prints the score per module and the survivors; True when the gate fails. `complete` names
    the modules whose every mutant ran: an accepted survivor of theirs that did not run is stale."""
    by_module: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_module[outcome.mutant.target.path].append(outcome)
    print(f"{'module':34} {'mutants':>8} {'killed':>7} {'accepted':>9} {'new':>4} {'score':>7}")
    for path, results in [*by_module.items(), ("all", list(outcomes))] if outcomes else ():
        survivors = [outcome.mutant.key for outcome in results if outcome.survived]
        known = sum(key in accepted for key in survivors)
        score = 100 * (len(results) - len(survivors)) / len(results) if results else 100.0
        print(
            f"{path:34} {len(results):8} {len(results) - len(survivors):7} {known:9} "
            f"{len(survivors) - known:4} {score:6.1f}%"
        )
    failed = False
    new = [outcome.mutant for outcome in outcomes if outcome.survived and outcome.mutant.key not in accepted]
    if new:
        failed = True
        print(f"\nSurvivors not in {listed_in} (add a test that catches each, or list it with why):")
        for mutant in new:
            print(f"  {mutant.target.path}:{mutant.line}\n{mutant.key}\n    why: ")
    run_keys = {outcome.mutant.key for outcome in outcomes}
    killed = {outcome.mutant.key for outcome in outcomes if not outcome.survived}
    stale = sorted(
        key
        for key in accepted
        if key in killed or key in gone or (key.split(" ", 1)[0] in complete and key not in run_keys)
    )
    if stale:
        failed = True
        print("\nAccepted survivors that no longer survive, or no longer exist (remove them):")
        for key in stale:
            print(f"  {key}")
    return failed


def _record(
    record: Record,
    outcomes: Sequence[Outcome],
    paths: list[str],
    accepted: dict[str, str],
) -> None:
    """Notes the full run of each module that passed it, at HEAD, in the record; says which did not.
    A run passes when each accepted survivor survives and each survivor is accepted: no survivor
    nobody reviewed is ever recorded."""
    head = _git("rev-parse", "HEAD")
    today = datetime.now(UTC).date().isoformat()
    for path in paths:
        results = [outcome for outcome in outcomes if outcome.mutant.target.path == path]
        survivors = {outcome.mutant.key for outcome in results if outcome.survived}
        mine = {key for key in accepted if key.split(" ", 1)[0] == path}
        if mine != survivors:
            print(f"not recorded: {path}, whose run did not pass")
            continue
        if head and _git("status", "--porcelain", "--", path):
            print(f"not recorded: {path} differs from HEAD, which the record names: commit it first")
            continue
        record.runs[path] = FullRun(
            commit=head,
            date=today,
            mutants=len(results),
            killed=len(results) - len(survivors),
            accepted=len(mine),
            seen=frozenset(digest(outcome.mutant.key) for outcome in results),
        )
        print(f"recorded: {path}, {record.runs[path].score:.1f}%")
    record.write()


def _low_score(record: Record, paths: list[str], min_score: float) -> bool:
    """True, having said so, when the recorded full runs of these modules score under min_score."""
    score = record.score(paths)
    if score is None or score >= min_score:
        return False
    print(f"\nThe recorded full runs of these modules score {score:.1f}% together, under {min_score}%.")
    return True


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


def _git(*arguments: str) -> str | None:
    """What git says, stripped; None outside a repository, or where git fails."""
    try:
        done = subprocess.run(["git", *arguments], capture_output=True, text=True, check=False)  # noqa: S603,S607
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _head_seed() -> int:
    """The sample's seed: HEAD's commit, so that each commit samples other mutants, and a run again
    of one commit the same."""
    head = _git("rev-parse", "HEAD")
    return int(head[:12], 16) if head else 0


_HUNK = re.compile(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", re.MULTILINE)


def _changed_lines(revision: str, paths: Sequence[str]) -> dict[str, set[int]]:
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
    parser.add_argument("--full", action="store_true", help="run every mutant; record the modules that pass")
    parser.add_argument("--module", action="append", default=[], help="only this module (repeatable)")
    parser.add_argument("--match", default="", help="only mutants whose key contains this text")
    parser.add_argument("--since", help="only the mutants of lines changed since this git revision")
    parser.add_argument("--sample", type=int, default=20, help="recorded mutants CI runs again (default 20)")
    parser.add_argument("--seed", type=int, help="chooses the sample (default: from HEAD's commit)")
    parser.add_argument("--most", type=int, default=100, help="new mutants CI runs before asking for --full")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="mutants at a time")
    parser.add_argument("--min-score", type=float, default=95.0, help="on --full, of all modules' records")
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument("--targets", default="mutation.targets:TARGETS", help=argparse.SUPPRESS)
    parser.add_argument("--accepted", default="mutation/accepted.txt", help=argparse.SUPPRESS)
    parser.add_argument("--record", default="mutation/record.json", help=argparse.SUPPRESS)
    parser.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    return parser


if __name__ == "__main__":
    sys.exit(main())
