"""The mutation gate itself (scripts/mutants), on a fixture whose tests leave one mutant alive: a
survivor not in the accepted list fails it, listed with why it passes, and a listed mutant that
no longer survives fails it again, so that the list stays true."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SURVIVOR = (
    "mutation/fixture/pricing.py [total] "
    "return subtotal if subtotal >= free_from else subtotal + SHIPPING -> "
    "return subtotal if subtotal > free_from else subtotal + SHIPPING"
)
KILLED = "mutation/fixture/pricing.py [SHIPPING] SHIPPING = 5 -> SHIPPING = 6"
WHY = "    why: no subtotal of exactly free_from is tried, on purpose\n"


def _gate(accepted: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """scripts/mutants on the fixture, as CI runs it on the real modules."""
    command = [
        sys.executable,
        "-m",
        "mutation",
        "--targets",
        "mutation.fixture.targets:TARGETS",
        "--accepted",
        str(accepted),
        "--min-score",
        "80",
        *options,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_a_survivor_fails_the_gate_until_it_is_accepted_with_a_reason(tmp_path: Path) -> None:
    accepted = tmp_path / "accepted.txt"
    accepted.write_text("# nothing accepted yet\n")
    refused = _gate(accepted)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"Survivors not in {accepted} " in refused.stdout
    assert f"\n{SURVIVOR}\n" in refused.stdout
    assert "mutation/fixture/pricing.py:11" in refused.stdout
    (score,) = [line for line in refused.stdout.splitlines() if line.endswith("%") and "fixture" in line]
    assert score.split() == ["mutation/fixture/pricing.py", "8", "7", "0", "1", "87.5%"]

    accepted.write_text(f"{SURVIVOR}\n{WHY}")
    passed = _gate(accepted)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Survivors not in" not in passed.stdout


def test_an_accepted_mutant_that_no_longer_survives_fails_the_gate(tmp_path: Path) -> None:
    accepted = tmp_path / "accepted.txt"
    accepted.write_text(f"{SURVIVOR}\n{WHY}{KILLED}\n    why: a stale entry\n")
    stale = _gate(accepted)
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert f"no longer survive, or no longer exist (remove them):\n  {KILLED}" in stale.stdout


def test_an_accepted_mutant_needs_its_reason(tmp_path: Path) -> None:
    accepted = tmp_path / "accepted.txt"
    accepted.write_text(f"{SURVIVOR}\n")
    unexplained = _gate(accepted)
    assert unexplained.returncode != 0
    assert "needs a `why:` line under it" in unexplained.stderr


def test_an_accepted_mutant_of_code_that_is_gone_fails_even_a_sample(tmp_path: Path) -> None:
    """A sample runs few mutants, yet an entry naming no mutant of the module at all is found."""
    renamed = SURVIVOR.replace("[total]", "[grand_total]")
    accepted = tmp_path / "accepted.txt"
    accepted.write_text(f"{SURVIVOR}\n{WHY}{renamed}\n{WHY}")
    stale = _gate(accepted, "--sample", "1", "--seed", "1")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert f"no longer survive, or no longer exist (remove them):\n  {renamed}\n" in stale.stdout
