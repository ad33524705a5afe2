"""Running mutants: each in a fork of one process that has imported the tests' dependencies, with
the mutated module served in place of its file, against the tests its target names.

A fork costs milliseconds where a fresh interpreter would cost a second or two of imports, which
is what lets one mutant run in seconds. The child forgets every module of the project, so the
tests import the mutated module, and everything that imports it, anew.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.metadata
import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

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


def warm_up(targets: Iterable[Target], root: Path) -> None:
    """Import what the tests import (pytest's plugins, conftest files, the test modules), once, in
    the process every mutant is forked from; then forget the project's own modules again."""
    for plugin in importlib.metadata.entry_points(group="pytest11"):
        plugin.load()
    for target in targets:
        importlib.import_module(target.module)
        for test in target.tests:
            path = Path(test.split("::")[0])
            conftests = [folder / "conftest.py" for folder in reversed(path.parents)]
            for module in [*(file for file in conftests if (root / file).exists()), path]:
                importlib.import_module(".".join(module.with_suffix("").parts))
    _forget_project_modules(root)


def baseline(target: Target, root: Path) -> float:
    """Seconds the target's tests take with no mutant; BaselineError if they do not pass."""
    started = time.monotonic()
    pid = _fork(target, None, root)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise BaselineError(
            f"the tests of {target.path} do not pass without any mutant (pytest exit {code}): "
            f"run `pytest {' '.join(target.tests)}`"
        )
    return time.monotonic() - started


def run(
    mutants: Sequence[Mutant],
    *,
    seconds_allowed: Callable[[Target], float],
    jobs: int,
    root: Path,
    done: Callable[[Outcome], None],
) -> list[Outcome]:
    """Every mutant against its target's tests, `jobs` at a time; `done` hears of each outcome."""
    waiting = list(reversed(mutants))
    running: dict[int, tuple[Mutant, float]] = {}
    outcomes: list[Outcome] = []
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                mutant = waiting.pop()
                running[_fork(mutant.target, mutant, root)] = (mutant, time.monotonic())
            time.sleep(_POLL_SECONDS)
            for pid, (mutant, started) in list(running.items()):
                status = _finished(pid, time.monotonic() - started > seconds_allowed(mutant.target))
                if status is not None:
                    del running[pid]
                    outcome = Outcome(mutant, status, time.monotonic() - started)
                    outcomes.append(outcome)
                    done(outcome)
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


def _fork(target: Target, mutant: Mutant | None, root: Path) -> int:
    pid = os.fork()
    if pid == 0:
        _child(target, mutant, root)
    return pid


def _child(target: Target, mutant: Mutant | None, root: Path) -> NoReturn:
    code = 70  # EX_SOFTWARE, should anything below fail before pytest answers
    try:
        os.setpgid(0, 0)
        quiet = os.open(os.devnull, os.O_WRONLY)
        os.dup2(quiet, 1)
        os.dup2(quiet, 2)
        _forget_project_modules(root)
        if mutant is not None:
            sys.meta_path.insert(0, _ServeMutant(mutant, root))
        chosen = ("-k", target.keywords) if target.keywords else ()
        code = int(pytest.main([*target.tests, *_PYTEST_ARGS, *chosen]))
    finally:
        os._exit(code)


def _forget_project_modules(root: Path) -> None:
    """Drop the project's modules from sys.modules, so that the next import reads them anew."""
    project = str(root.resolve())
    virtualenv = str((root / ".venv").resolve())
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(project) and not file.startswith(virtualenv):
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
