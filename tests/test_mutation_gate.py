"""The mutation gate itself (scripts/mutants), on a copy of a fixture whose tests leave one mutant
alive: a survivor not in the accepted list fails it, listed with why it passes, and a listed mutant
that no longer survives fails it again, so that the list stays true. A full run records what it
saw; CI's run then takes every mutant new to the record, so a new survivor in changed code still
fails it, and a sample of the rest, which finds a test weakened under unchanged code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SURVIVOR = (
    "shop/pricing.py [total] "
    "return subtotal if subtotal >= free_from else subtotal + SHIPPING -> "
    "return subtotal if subtotal > free_from else subtotal + SHIPPING"
)
KILLED = "shop/pricing.py [SHIPPING] SHIPPING = 5 -> SHIPPING = 6"
WHY = "    why: no subtotal of exactly free_from is tried, on purpose\n"
# A coupon, which no test passes: taking it off or adding it on is all one to them.
WITH_A_COUPON = (
    "def total(prices: list[int], free_from: int, coupon: int = 0) -> int:\n"
    '    """The sum of the prices, less a coupon, and shipping below `free_from`."""\n'
    "    subtotal = sum(prices) - coupon\n"
)
NEW_SURVIVOR = "shop/pricing.py [total] subtotal = sum(prices) - coupon -> subtotal = sum(prices) + coupon"


def _shop(tmp_path: Path, accepted: str) -> Path:
    """The fixture package, copied to tmp_path/shop, so that a test may change it; and its list
    of accepted survivors."""
    shutil.copytree(
        ROOT / "mutation" / "fixture", tmp_path / "shop", ignore=shutil.ignore_patterns("__pycache__")
    )
    (tmp_path / "accepted.txt").write_text(accepted)
    return tmp_path


def _gate(project: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """scripts/mutants on the copied fixture, as CI runs it on the real modules."""
    command = [
        sys.executable,
        "-m",
        "mutation",
        "--root",
        str(project),
        "--targets",
        "shop.targets:TARGETS",
        "--accepted",
        str(project / "accepted.txt"),
        "--record",
        str(project / "record.json"),
        "--min-score",
        "80",
        *options,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def _add_a_coupon(project: Path) -> None:
    """Changes total()'s first two lines, so that they take a coupon."""
    pricing = project / "shop" / "pricing.py"
    source = pricing.read_text()
    pricing.write_text(
        source.replace(source[source.index("def total") : source.index("    return")], WITH_A_COUPON)
    )


def _score(run: subprocess.CompletedProcess[str]) -> list[str]:
    (line,) = [line for line in run.stdout.splitlines() if line.startswith("shop/") and line.endswith("%")]
    return line.split()


def test_a_survivor_fails_the_gate_until_it_is_accepted_with_a_reason(tmp_path: Path) -> None:
    project = _shop(tmp_path, "# nothing accepted yet\n")
    refused = _gate(project, "--full")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"Survivors not in {project / 'accepted.txt'} " in refused.stdout
    assert f"\n{SURVIVOR}\n" in refused.stdout
    assert "shop/pricing.py:11" in refused.stdout
    assert _score(refused) == ["shop/pricing.py", "8", "7", "0", "1", "87.5%"]
    assert "not recorded: shop/pricing.py, whose run did not pass" in refused.stdout
    assert json.loads((project / "record.json").read_text()) == {}

    (project / "accepted.txt").write_text(f"{SURVIVOR}\n{WHY}")
    passed = _gate(project, "--full")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "Survivors not in" not in passed.stdout
    recorded = json.loads((project / "record.json").read_text())["shop/pricing.py"]
    assert (recorded["mutants"], recorded["killed"], recorded["accepted"], recorded["score"]) == (
        8,
        7,
        1,
        87.5,
    )
    assert len(recorded["seen"].split()) == 8


def test_an_accepted_mutant_that_no_longer_survives_fails_the_gate(tmp_path: Path) -> None:
    project = _shop(tmp_path, f"{SURVIVOR}\n{WHY}{KILLED}\n    why: a stale entry\n")
    stale = _gate(project, "--full")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert f"no longer survive, or no longer exist (remove them):\n  {KILLED}" in stale.stdout


def test_an_accepted_mutant_needs_its_reason(tmp_path: Path) -> None:
    project = _shop(tmp_path, f"{SURVIVOR}\n")
    unexplained = _gate(project)
    assert unexplained.returncode != 0
    assert "needs a `why:` line under it" in unexplained.stderr


def test_a_new_survivor_in_a_changed_line_fails_the_gate(tmp_path: Path) -> None:
    """Only the mutants the last full run did not see run, without a sample: those of the new code."""
    project = _shop(tmp_path, f"{SURVIVOR}\n{WHY}")
    assert _gate(project, "--full").returncode == 0
    unchanged = _gate(project, "--sample", "0")
    assert unchanged.returncode == 0, unchanged.stdout + unchanged.stderr
    assert "shop/pricing.py" in unchanged.stdout
    assert "87.5%; 0 new, 0 sampled" in unchanged.stdout
    assert "== mutants: 0 of 0 modules" in unchanged.stdout

    _add_a_coupon(project)
    changed = _gate(project, "--sample", "0")
    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert "87.5%; 4 new, 0 sampled" in changed.stdout
    assert "== mutants: 4 of 1 modules" in changed.stdout
    assert f"Survivors not in {project / 'accepted.txt'} " in changed.stdout
    assert f"  shop/pricing.py:10\n{NEW_SURVIVOR}\n" in changed.stdout
    # The survivor accepted before, on a line left as it was, is neither run again nor stale.
    assert SURVIVOR not in changed.stdout


def test_the_sample_finds_a_survivor_a_weakened_test_lets_through_in_unchanged_code(tmp_path: Path) -> None:
    project = _shop(tmp_path, f"{SURVIVOR}\n{WHY}")
    assert _gate(project, "--full").returncode == 0
    checks = project / "shop" / "check_pricing.py"
    checks.write_text(checks.read_text().replace("== 35", "> 0"))
    weakened = _gate(project, "--sample", "7")
    assert weakened.returncode == 1, weakened.stdout + weakened.stderr
    assert "87.5%; 0 new, 7 sampled" in weakened.stdout  # all but the accepted survivor
    assert f"\n{KILLED}\n" in weakened.stdout


def test_a_record_far_behind_asks_for_a_full_run(tmp_path: Path) -> None:
    project = _shop(tmp_path, f"{SURVIVOR}\n{WHY}")
    assert _gate(project, "--full").returncode == 0
    _add_a_coupon(project)
    behind = _gate(project, "--most", "3")
    assert behind.returncode == 1, behind.stdout + behind.stderr
    assert "87.5%; 4 new, " in behind.stdout
    assert "The record is behind: 4 mutants are new to it, more than CI runs (--most 3)." in behind.stdout
    assert "\n  scripts/mutants --full --module shop/pricing.py\n" in behind.stdout
    assert "== mutants" not in behind.stdout


def test_a_module_never_run_in_full_is_sampled_and_says_so_until_it_is_recorded(tmp_path: Path) -> None:
    """No record to tell its new mutants by: a sample, as CI ran before records; an unaccepted
    survivor in it still fails."""
    project = _shop(tmp_path, "# nothing accepted yet\n")
    sampled = _gate(project, "--sample", "3")
    assert (
        "shop/pricing.py                    never run in full (record it: scripts/mutants --full --module "
        "shop/pricing.py); 0 new, 3 sampled"
    ) in sampled.stdout
    assert "== mutants: 3 of 1 modules" in sampled.stdout
    every_one = _gate(project, "--sample", "8")
    assert every_one.returncode == 1, every_one.stdout + every_one.stderr
    assert f"Survivors not in {project / 'accepted.txt'} " in every_one.stdout
    assert f"\n{SURVIVOR}\n" in every_one.stdout
    assert not (project / "record.json").exists()  # CI records nothing: only a passing full run does


def test_an_accepted_mutant_of_code_that_is_gone_fails_even_a_sample(tmp_path: Path) -> None:
    """A sample runs few mutants, yet an entry naming no mutant of the module at all is found."""
    renamed = SURVIVOR.replace("[total]", "[grand_total]")
    project = _shop(tmp_path, f"{SURVIVOR}\n{WHY}")
    assert _gate(project, "--full").returncode == 0
    (project / "accepted.txt").write_text(f"{SURVIVOR}\n{WHY}{renamed}\n{WHY}")
    stale = _gate(project, "--sample", "1", "--seed", "1")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "0 new, 1 sampled" in stale.stdout
    assert f"no longer survive, or no longer exist (remove them):\n  {renamed}\n" in stale.stdout


def test_a_full_run_fails_under_the_minimum_score_yet_records_what_it_saw(tmp_path: Path) -> None:
    project = _shop(tmp_path, f"{SURVIVOR}\n{WHY}")
    low = _gate(project, "--full", "--min-score", "90")
    assert low.returncode == 1, low.stdout + low.stderr
    assert "The recorded full runs of these modules score 87.5% together, under 90.0%." in low.stdout
    assert json.loads((project / "record.json").read_text())["shop/pricing.py"]["score"] == 87.5
    # CI's gate leaves the score to full runs: it runs what is new, and nothing is.
    assert _gate(project, "--sample", "0", "--min-score", "90").returncode == 0
