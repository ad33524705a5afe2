"""mutation/record.json: what the last full run of each module saw, so that CI runs only the rest.

Per module: the commit and date of the run, its counts and score, and a digest of every mutant it
ran, each then killed or accepted (a module is recorded only when its run passes). A mutant is
named by its file, scope and change, not its line, so an edit makes new mutants of exactly the
code it touched, and a change to the operators (mutation/generate.py, mutmut) makes new ones too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from mutation.generate import Mutant


def digest(key: str) -> str:
    """A mutant's key, in 8 hex digits: 32 bits, so that a new mutant is mistaken for a recorded
    one about once in 4 billion."""
    return hashlib.blake2b(key.encode(), digest_size=4).hexdigest()


@dataclass(frozen=True)
class FullRun:
    commit: str | None
    date: str
    mutants: int
    killed: int
    accepted: int
    seen: frozenset[str]
    """The digests of the mutants it ran."""

    @property
    def score(self) -> float:
        return round(100 * self.killed / self.mutants, 1) if self.mutants else 100.0


class Record:
    """The last full run of each module, read from and written to one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        document = json.loads(path.read_text()) if path.exists() else {}
        self.runs: dict[str, FullRun] = {
            module: FullRun(
                commit=entry["commit"],
                date=entry["date"],
                mutants=entry["mutants"],
                killed=entry["killed"],
                accepted=entry["accepted"],
                seen=frozenset(entry["seen"].split()),
            )
            for module, entry in document.items()
        }

    def has_seen(self, mutant: Mutant) -> bool:
        run = self.runs.get(mutant.target.path)
        return run is not None and digest(mutant.key) in run.seen

    def score(self, modules: list[str]) -> float | None:
        """The share of these modules' mutants their full runs killed; None unless all have one."""
        if not modules or any(module not in self.runs for module in modules):
            return None
        mutants = sum(self.runs[module].mutants for module in modules)
        killed = sum(self.runs[module].killed for module in modules)
        return 100 * killed / mutants if mutants else 100.0

    def write(self) -> None:
        document = {
            module: {
                "commit": run.commit,
                "date": run.date,
                "mutants": run.mutants,
                "killed": run.killed,
                "accepted": run.accepted,
                "score": run.score,
                "seen": " ".join(sorted(run.seen)),
            }
            for module, run in sorted(self.runs.items())
        }
        self.path.write_text(json.dumps(document, indent=2) + "\n")
