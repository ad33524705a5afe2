"""Mutation testing of census-mcp's security- and data-critical modules.

`scripts/mutants` makes small faults in those modules (mutants), runs the tests that cover each
module against each mutant, and lists the mutants no test noticed. A survivor is a fault the
tests let through: either a missing test, or a change that does not matter, which is then
recorded, with why, in mutation/accepted.txt. See docs/development.md, "Mutation testing".
"""
