"""The mutants of a module: mutmut's operators, applied to all of it, and four more.

mutmut 3's own runner mutates only undecorated functions and methods (its trampolines cannot
reach module-level constants or decorated functions), yet here much of what must not break is
exactly there: the secret-key fragments, `is_secret_key` under its cache, the retry statuses,
the per-version API mapping. So its operators are applied here to the whole module source, and
one mutated copy of the module is made per mutant.

The four added operators make the faults a hand audit found surviving (issue 14) and mutmut
has no operator for: an element dropped from a literal collection (a secret-key fragment), an
operand dropped from `and`/`or`/`|` (a condition of a lookup, a type of a check), an `if` forced
one way (a guard), and a statement dropped (a `raise`, a call for its effect).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import libcst as cst
from mutmut.mutation.mutators import mutation_operators

_NOT_MUTATED_CALLS = frozenset({"len", "isinstance"})
"""Calls mutmut leaves alone (`len(None)` fails at once); their arguments are still mutated."""


@dataclass(frozen=True)
class Target:
    """A module to mutate, the top-level names in it to mutate (every one when `only` is empty),
    and the tests that cover them: the only tests run against its mutants."""

    path: str
    tests: tuple[str, ...]
    only: tuple[str, ...] = ()
    keywords: str = ""
    """A pytest -k expression that narrows the tests further: "not v1", where the API version
    cannot matter to the module, halves the time each mutant takes."""

    @property
    def module(self) -> str:
        return self.path.removesuffix(".py").replace("/", ".")


@dataclass(frozen=True)
class Mutant:
    target: Target
    line: int
    scope: str
    before: str
    after: str
    source: str
    """The whole module, mutated."""
    key: str
    """What names this mutant in mutation/accepted.txt: its file, scope and change, not its line,
    so that an edit elsewhere in the file leaves it the same."""


def mutants_of(target: Target, root: Path = Path()) -> list[Mutant]:
    """Every mutant of the target's module, in source order, none twice."""
    original = (root / target.path).read_text()
    module = cst.parse_module(original)
    unknown = set(target.only) - {_name_of(statement) for statement in module.body}
    if unknown:
        raise ValueError(f"{target.path} has no top-level {', '.join(sorted(unknown))}")
    # Each mutant is its statement regenerated between the others' text: regenerating the whole
    # module for each would take a minute for the modules listed in targets.py.
    parts = [module.code_for_node(statement) for statement in module.body]
    head = original[: original.index("".join(parts))]
    tail = original[len(head) + sum(map(len, parts)) :]
    mutants: list[Mutant] = []
    seen: set[str] = {original}
    keys: Counter[str] = Counter()
    for index, statement in enumerate(module.body):
        name = _name_of(statement)
        if target.only and name not in target.only:
            continue
        finder = _Finder(name or "<module>")
        statement.visit(finder)
        before, after = head + "".join(parts[:index]), "".join(parts[index + 1 :]) + tail
        for node, replacement, scope in finder.found:
            mutated = statement.deep_replace(node, replacement)
            assert isinstance(mutated, cst.CSTNode)
            source = before + module.code_for_node(mutated) + after
            if source in seen:
                continue
            seen.add(source)
            line, was, now = _change(original, source, same_head=len(before), same_tail=len(after))
            key = f"{target.path} [{scope}] {was} -> {now or '(nothing)'}"
            keys[key] += 1
            if keys[key] > 1:
                key += f" ({keys[key]})"
            mutants.append(Mutant(target, line, scope, was, now, source, key))
    return mutants


def _name_of(statement: cst.CSTNode) -> str | None:
    """The name a top-level statement defines: a function, a class or a constant."""
    if isinstance(statement, cst.FunctionDef | cst.ClassDef):
        return statement.name.value
    if isinstance(statement, cst.SimpleStatementLine) and statement.body:
        first = statement.body[0]
        if isinstance(first, cst.Assign) and isinstance(first.targets[0].target, cst.Name):
            return first.targets[0].target.value
        if isinstance(first, cst.AnnAssign) and isinstance(first.target, cst.Name):
            return first.target.value
    return None


def _change(original: str, mutated: str, *, same_head: int = 0, same_tail: int = 0) -> tuple[int, str, str]:
    """The line where `mutated` departs from `original`, and the lines that differ, before and
    after, each on one line. The first `same_head` and last `same_tail` characters are known to be
    the same (the other statements), so the comparison starts past them."""
    shorter = min(len(original), len(mutated))
    start = min(same_head, shorter)
    while start < shorter and original[start] == mutated[start]:
        start += 1
    same_end = min(same_tail, shorter - start)
    while same_end < shorter - start and original[-1 - same_end] == mutated[-1 - same_end]:
        same_end += 1
    line_start = original.rfind("\n", 0, start) + 1
    stop = original.find("\n", len(original) - same_end)
    stop = len(original) if stop == -1 else stop
    mutated_stop = stop - len(original) + len(mutated)
    before = " ".join(original[line_start:stop].split())
    after = " ".join(mutated[line_start:mutated_stop].split())
    return original.count("\n", 0, line_start) + 1, before, after


class _Finder(cst.CSTVisitor):
    """Collects (node, replacement, scope) for every mutation of one top-level statement."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.found: list[tuple[cst.CSTNode, cst.CSTNode, str]] = []
        self._scopes = [scope]
        self._depth = 0
        self._assigned: set[int] = set()
        """Tuples that are assigned to (`a, b = ...`), not literals."""

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.FunctionDef | cst.ClassDef):
            if self._depth:
                self._scopes.append(f"{self._scopes[-1]}.{node.name.value}")
            self._depth += 1
            return True
        if _skipped(node):
            return False
        self._note_assignment_targets(node)
        scope = self._scopes[-1]
        self.found.extend((node, replacement, scope) for replacement in self._replacements(node))
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        if isinstance(original_node, cst.FunctionDef | cst.ClassDef):
            self._depth -= 1
            if self._depth:
                self._scopes.pop()

    def _note_assignment_targets(self, node: cst.CSTNode) -> None:
        if isinstance(node, cst.AssignTarget | cst.For | cst.CompFor | cst.Del):
            self._assigned.add(id(node.target))
        elif isinstance(node, cst.AsName):
            self._assigned.add(id(node.name))

    def _replacements(self, node: cst.CSTNode) -> Iterator[cst.CSTNode]:
        if not _is_call_to(node, _NOT_MUTATED_CALLS):
            for kind, operator in mutation_operators:
                if isinstance(node, kind):
                    yield from operator(node)
        yield from _dropped_elements(node, self._assigned)
        yield from _dropped_operands(node)
        yield from _forced_conditions(node)
        yield from _dropped_statement(node)


def _skipped(node: cst.CSTNode) -> bool:
    """Nodes whose mutants say nothing: type annotations, decorators, imports and docstrings."""
    if isinstance(node, cst.Annotation | cst.Decorator | cst.Import | cst.ImportFrom):
        return True
    return (
        isinstance(node, cst.SimpleStatementLine)
        and len(node.body) == 1
        and isinstance(node.body[0], cst.Expr)
        and isinstance(node.body[0].value, cst.SimpleString | cst.ConcatenatedString)
    )


def _is_call_to(node: cst.CSTNode, names: frozenset[str]) -> bool:
    return isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in names


def _dropped_elements(node: cst.CSTNode, assigned: set[int]) -> Iterator[cst.CSTNode]:
    """`("a", "b", "c")` -> `("a", "c")`: a literal collection without one of its elements."""
    if not isinstance(node, cst.Tuple | cst.List | cst.Set) or id(node) in assigned:
        return
    if len(node.elements) < 2:
        return
    for index in range(len(node.elements)):
        kept = [*node.elements[:index], *node.elements[index + 1 :]]
        if isinstance(node, cst.Tuple) and len(kept) == 1:
            kept = [kept[0].with_changes(comma=cst.Comma())]  # still a tuple
        yield node.with_changes(elements=kept)


def _dropped_operands(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """`a and b` -> `a`, `b`; the same for `or` and for `|` (a union of types, a merge of dicts)."""
    if isinstance(node, cst.BooleanOperation) or (
        isinstance(node, cst.BinaryOperation) and isinstance(node.operator, cst.BitOr)
    ):
        for operand in (node.left, node.right):
            yield operand if operand.lpar else operand.with_changes(lpar=node.lpar, rpar=node.rpar)


def _forced_conditions(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """`if guard:` -> `if True:` and `if False:`."""
    if isinstance(node, cst.If):
        for value in ("True", "False"):
            if not (isinstance(node.test, cst.Name) and node.test.value == value):
                yield node.with_changes(test=cst.Name(value))


def _dropped_statement(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """A `raise`, a `del`, or a call made for its effect, replaced by `pass`."""
    if isinstance(node, cst.Raise | cst.Del) or (
        isinstance(node, cst.Expr) and not isinstance(node.value, cst.Ellipsis)
    ):
        yield cst.Pass()
