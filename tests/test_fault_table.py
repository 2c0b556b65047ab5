"""docs/reliability.md's table as a test: every fault ends as the table's "now" column says (a clear
error for the cases with a message to match, else ok or recorded). The fast cases run in the default
suite; those that train or generate to the end, and the multi-process ones, under ``slow``."""

import pytest

from fault_cases import CASES, mount_allowed, run_case


def params():
    for case in CASES:
        marks = [pytest.mark.slow] if case.slow else []
        yield pytest.param(case, id=case.name, marks=marks)


@pytest.mark.parametrize("case", params())
def test_the_fault_ends_as_the_table_says(case):
    if case.needs_mount and not mount_allowed():
        pytest.skip("this machine does not let the tests mount a tmpfs (the read-only and full disks)")
    outcome, message = run_case(case)
    expected = ("clear error",) if case.named else ("ok", "recorded")
    assert outcome in expected, f"{case.name}: {outcome} ({message})"
