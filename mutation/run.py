"""Running mutants: each in a fork of one process that has imported the tests' dependencies, with
the mutated module served in place of its file, against the tests that reach the mutated code.

A fork costs milliseconds where a fresh interpreter would cost a second or two of imports, which
is what lets one mutant run in seconds. The child forgets every module of the project, so the
tests import the mutated module, and everything that imports it, anew.

The baseline, the target's tests without a mutant, runs under coverage and notes which test runs
which line. A mutant first runs only the tests that reach its statement, those of the quickest
modules first, and is usually killed by one of them in a fraction of a second; a mutant that
survives them, or overruns the time they were given, runs again against all the target's tests, in
their order and with their time, as it always did (and, overrunning that too, once more with four
times the time, as a busy machine can slow every test). So a mutant is reported a survivor
exactly when the target's tests all pass with it in place, and a hang only when they overrun.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib
import importlib.abc
import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest
from coverage import Coverage

from mutation.generate import Mutant, Target

# Stop at the first failing test: one is enough to kill a mutant.
_PYTEST_ARGS = ("-x", "-q", "--no-header", "-p", "no:cacheprovider", "-o", "addopts=")
_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str
    """"killed", "timed out" (also killed) or "survived"."""
    seconds: float

    @property
    def survived(self) -> bool:
        return self.status == "survived"


class BaselineError(Exception):
    """The tests of a target fail, or find nothing, with no mutant in place."""


@dataclass(frozen=True)
class Baseline:
    """The target's tests without a mutant: which exist, how long each takes, what each reaches."""

    target: Target
    tests: tuple[str, ...]
    """Their node ids, in the order the target names them."""
    seconds: dict[str, float]
    overhead: float
    """What a run costs besides its tests: pytest starting, the project imported anew."""
    reached_by: dict[int, frozenset[str]]
    """For each line of the module that ran, the tests that ran it."""
    on_import: frozenset[int]
    """Lines that ran outside any test: at import, whose effect any test may meet."""
    statements: dict[int, tuple[int, int]]
    """For each line, the first and last line of the innermost statement holding it."""

    @property
    def total(self) -> float:
        return self.overhead + sum(self.seconds.values())

    def tests_for(self, mutant: Mutant) -> tuple[str, ...]:
        """The tests that run the mutant's statement, quickest module first, each module's in order;
        every test when the statement runs on import. Coverage of a statement spread over lines
        marks some of them only, hence the statement, not the line."""
        first, last = self.statements.get(mutant.line, (mutant.line, mutant.line))
        lines = range(first, last + 1)
        if any(line in self.on_import for line in lines):
            chosen = set(self.tests)
        else:
            chosen = {test for line in lines for test in self.reached_by.get(line, ())}
        by_module: dict[str, list[str]] = defaultdict(list)
        for test in self.tests:
            if test in chosen:
                by_module[test.split("::")[0]].append(test)
        modules = sorted(by_module.values(), key=lambda tests: sum(self.seconds[test] for test in tests))
        return tuple(test for tests in modules for test in tests)

    def seconds_allowed(self, tests: Sequence[str], patience: float = 1) -> float:
        """How long these tests may take with a mutant in place before it counts as a hang: stopped,
        it counts as killed, as the tests' own time limits would have failed it, only later."""
        return patience * (2 * (self.overhead + sum(self.seconds[test] for test in tests)) + 5)


def warm_up(targets: Sequence[Target], root: Path) -> None:
    """Import all a test run imports (pytest's plugins and what they load late, conftest files, the
    test modules), once, in the process every mutant is forked from, by collecting the targets'
    tests here; then forget the project's own modules again."""
    # Compiled once, here, not by every mutant's process (as it would be under PYTHONDONTWRITEBYTECODE).
    sys.dont_write_bytecode = False
    tests = [test for target in targets for test in target.tests]
    if not tests:
        return  # pytest given no test would collect its testpaths, the whole suite
    with _quiet():
        pytest.main([*tests, "--collect-only", *_PYTEST_ARGS])
    _forget_project_modules(root)
    # What this process holds (the mutants, their parsed modules) is never garbage: a child's
    # collections (pytest makes two at its end) need not walk it.
    gc.collect()
    gc.freeze()


def baselines(targets: Sequence[Target], root: Path, at_once: int) -> dict[Target, Baseline]:
    """Each target's tests without a mutant, `at_once` targets at a time: collected first, to name
    them one by one as a mutant will, then run by those names under coverage. BaselineError when
    a target's tests fail, or none is found."""
    with tempfile.TemporaryDirectory() as scratch:
        collecting = [
            _Job(target, None, target.tests, ("--collect-only",), Path(scratch, f"{index}.collected"))
            for index, target in enumerate(targets)
        ]
        _all_pass(collecting, root, at_once)
        measuring = []
        for index, job in enumerate(collecting):
            assert job.out is not None
            tests = tuple(json.loads(job.out.read_text())["tests"])
            if not tests:
                raise BaselineError(
                    f"no test of {job.target.path} was found: see {' '.join(job.target.tests)}"
                )
            measuring.append(_Job(job.target, None, tests, (), Path(scratch, f"{index}.measured")))
        took = _all_pass(measuring, root, at_once)
        return {
            job.target: _baseline_of(job, seconds, root) for job, seconds in zip(measuring, took, strict=True)
        }


def _baseline_of(job: _Job, elapsed: float, root: Path) -> Baseline:
    """What a measured run of a target's tests saw, as a Baseline."""
    assert job.out is not None
    seen = json.loads(job.out.read_text())
    seconds = {test: seen["seconds"].get(test, 0.0) for test in job.tests}
    reached_by: dict[int, set[str]] = defaultdict(set)
    on_import: set[int] = set()
    for line, contexts in seen["lines"].items():
        for context in contexts:
            if context in seconds:
                reached_by[int(line)].add(context)
            else:
                on_import.add(int(line))
    return Baseline(
        target=job.target,
        tests=tuple(job.tests),
        seconds=seconds,
        overhead=max(0.0, elapsed - sum(seconds.values())),
        reached_by={line: frozenset(names) for line, names in reached_by.items()},
        on_import=frozenset(on_import),
        statements=_statements((root / job.target.path).read_text()),
    )


def _all_pass(jobs: Sequence[_Job], root: Path, at_once: int) -> list[float]:
    """Runs the jobs with no mutant, `at_once` at a time; the seconds each took. BaselineError,
    the others stopped, when one fails."""
    waiting = list(reversed(list(enumerate(jobs))))
    running: dict[int, tuple[int, float]] = {}
    took = [0.0] * len(jobs)
    try:
        while waiting or running:
            while waiting and len(running) < at_once:
                index, job = waiting.pop()
                running[_fork(job, root)] = (index, time.monotonic())
            pid, status = os.waitpid(-1, 0)
            if pid not in running:
                continue
            index, started = running.pop(pid)
            took[index] = time.monotonic() - started
            _stop(pid)  # anything the tests left running in its process group
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                target = jobs[index].target
                raise BaselineError(
                    f"the tests of {target.path} do not pass without any mutant (pytest exit {code}): "
                    f"run `pytest {' '.join(target.tests)}`"
                )
    finally:
        for pid in running:
            _stop(pid)
    return took


def run(
    mutants: Sequence[Mutant],
    *,
    baselines: Callable[[Target], Baseline],
    jobs: int,
    root: Path,
    done: Callable[[Outcome], None],
) -> list[Outcome]:
    """Every mutant against the tests that reach it and, should it survive them or overrun their
    time, against all its target's tests; `jobs` at a time; `done` hears of each outcome.

    Each run of a mutant is one stage: its first tests, then all its target's tests, then, when
    those overran their time too, all of them again with four times that. A machine busier than
    when the baseline was measured slows every test: only a mutant that overruns that as well
    counts as a hang."""
    waiting = list(reversed(mutants))
    # pid -> (mutant, when it began, when this stage began, seconds allowed, the stage)
    running: dict[int, tuple[Mutant, float, float, float, str]] = {}
    outcomes: list[Outcome] = []

    def start(mutant: Mutant, began: float, stage: str) -> None:
        known = baselines(mutant.target)
        tests = known.tests_for(mutant) if stage == "first" else known.tests
        allowed = known.seconds_allowed(tests, patience=4 if stage == "patient" else 1)
        pid = _fork(_Job(mutant.target, mutant, tests), root)
        running[pid] = (mutant, began, time.monotonic(), allowed, stage)

    def finish(mutant: Mutant, began: float, status: str) -> None:
        outcome = Outcome(mutant, status, time.monotonic() - began)
        outcomes.append(outcome)
        done(outcome)

    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                mutant = waiting.pop()
                first = baselines(mutant.target).tests_for(mutant)
                everything = len(first) in (0, len(baselines(mutant.target).tests))
                start(mutant, time.monotonic(), "all" if everything else "first")
            time.sleep(_POLL_SECONDS)
            for pid, (mutant, began, since, allowed, stage) in list(running.items()):
                status = _finished(pid, time.monotonic() - since > allowed)
                if status is None:
                    continue
                del running[pid]
                if stage == "first" and status != "killed":
                    start(mutant, began, "all")
                elif stage == "all" and status == "timed out":
                    start(mutant, began, "patient")
                else:
                    finish(mutant, began, status)
    finally:
        for pid in running:
            _stop(pid)
    return outcomes


def _finished(pid: int, overdue: bool) -> str | None:
    """The outcome of a child that has ended (stopping it first when overdue), else None."""
    ended, status = os.waitpid(pid, os.WNOHANG)
    if not ended:
        if not overdue:
            return None
        _stop(pid)
        return "timed out"
    _stop(pid)  # anything the tests left running in the mutant's process group
    return "survived" if os.waitstatus_to_exitcode(status) == 0 else "killed"


def _stop(pid: int) -> None:
    """Ends the process group of one child this runner forked, and reaps the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


@dataclass(frozen=True)
class _Job:
    """One pytest run, in a child: some of the target's tests, with the mutant in place (None for
    the baseline); with `out`, what the run found goes there (see _observed)."""

    target: Target
    mutant: Mutant | None
    tests: Sequence[str]
    options: Sequence[str] = ()
    out: Path | None = None


def _fork(job: _Job, root: Path) -> int:
    pid = os.fork()
    if pid == 0:
        _child(job, root)
    return pid


def _child(job: _Job, root: Path) -> NoReturn:
    code = 70  # EX_SOFTWARE, should anything below fail before pytest answers
    try:
        os.setpgid(0, 0)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        _forget_project_modules(root)
        if job.mutant is not None:
            sys.meta_path.insert(0, _ServeMutant(job.mutant, root))
        chosen = ("-k", job.target.keywords) if job.target.keywords else ()
        arguments = [*job.tests, *_PYTEST_ARGS, *chosen, *job.options]
        if job.out is None:
            code = int(pytest.main(arguments))
        else:
            collecting = "--collect-only" in job.options
            code = _observed(arguments, root / job.target.path, collecting=collecting, out=job.out)
    finally:
        os._exit(code)


def _observed(arguments: list[str], module: Path, *, collecting: bool, out: Path) -> int:
    """pytest.main(arguments), noting the tests it finds, each one's seconds, and, under coverage,
    which lines of `module` each runs (lines run between tests count as run on import)."""
    measure = Coverage(data_file=None, config_file=False, include=[str(module)])
    watcher = _Watcher(None if collecting else measure)
    try:
        code = int(pytest.main(arguments, plugins=[watcher]))
    finally:
        lines = watcher.lines(str(module))
    out.write_text(json.dumps({"tests": watcher.tests, "seconds": watcher.seconds, "lines": lines}))
    return code


class _Watcher:
    """A pytest plugin that notes the tests, their seconds, and with coverage what each runs."""

    def __init__(self, measure: Coverage | None) -> None:
        self.tests: list[str] = []
        self.seconds: dict[str, float] = defaultdict(float)
        self._measure = measure
        if measure is not None:
            measure.start()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.tests = list(dict.fromkeys(item.nodeid for item in session.items))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Iterator[None]:
        if self._measure is not None:
            self._measure.switch_context(item.nodeid)
        try:
            return (yield)
        finally:
            if self._measure is not None:
                self._measure.switch_context("")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] += report.duration

    def lines(self, path: str) -> dict[int, list[str]]:
        if self._measure is None:
            return {}
        self._measure.stop()
        data = self._measure.get_data()
        return {line: list(contexts) for line, contexts in data.contexts_by_lineno(path).items()}


def _statements(source: str) -> dict[int, tuple[int, int]]:
    """For each line of a module, the first and last line of the innermost statement holding it."""
    innermost: dict[int, tuple[int, int]] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.stmt) and node.end_lineno is not None:
            for line in range(node.lineno, node.end_lineno + 1):
                held = innermost.get(line)
                if held is None or held[1] - held[0] >= node.end_lineno - node.lineno:
                    innermost[line] = (node.lineno, node.end_lineno)
    return innermost


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Nothing written to stdout or stderr, by Python or below it."""
    saved = os.dup(1), os.dup(2)
    quiet = os.open(os.devnull, os.O_WRONLY)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in (*saved, quiet):
            os.close(descriptor)


def _forget_project_modules(root: Path) -> None:
    """Drop the project's modules from sys.modules, so that the next import reads them anew."""
    project = str(root.resolve())
    virtualenv = str((root / ".venv").resolve())
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(project) and not file.startswith(virtualenv) and name != "__main__":
            del sys.modules[name]


class _ServeMutant(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the mutant's source under its module's name, as if it were the file."""

    def __init__(self, mutant: Mutant, root: Path) -> None:
        self._name = mutant.target.module
        self._path = str((root / mutant.target.path).resolve())
        self._source = mutant.source

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != self._name:
            return None
        return importlib.util.spec_from_loader(fullname, self, origin=self._path)

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__file__ = self._path
        exec(compile(self._source, self._path, "exec", dont_inherit=True), module.__dict__)  # noqa: S102
