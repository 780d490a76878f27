"""The verdict of a training comparison's claim: each answer, the equal case, and the seed-spread rule, on numbers
written here by hand."""

from pathlib import Path

import pytest

from resnetlab.experiments.comparison import RESULT_COLUMNS, Claim, Comparison, Verdict, verdicts
from resnetlab.experiments.sweep import GroupResult, RunResult, RunSpec
from resnetlab.experiments.tables import Table

NOT_CONCLUSIVE = " (the difference is within the seed-to-seed std: not conclusive)"


@pytest.mark.parametrize("steps, answer", [(6_400, "yes"), (6_399, "too short to judge"), (None, "yes")])
def test_a_verdict_needs_a_tenth_of_the_papers_schedule(steps, answer):
    verdict = Verdict("plain-56 train error > plain-20", "12.50", "10.00", ">", steps=steps)
    assert verdict.answer.startswith(answer) and verdict.line().endswith("12.50 % vs 10.00 %")


@pytest.mark.parametrize("relation, left, right, answer", [
    ("<", "9.00", "10.00", "yes"),
    ("<", "11.00", "10.00", "no"),
    (">", "12.50", "10.00", "yes"),
    (">", "9.00", "10.00", "no"),
    (">", "", "10.00", "unknown (missing numbers)"),
    ("<", "9.00", "", "unknown (missing numbers)"),
])
def test_each_relation_answers_yes_no_or_unknown(relation, left, right, answer):
    verdict = Verdict(f"ResNet-20 test error {relation} plain-20", left, right, relation, steps=64_000)
    assert verdict.answer == answer
    expected = f"ResNet-20 test error {relation} plain-20: {answer}"
    assert verdict.line() == (expected if answer.startswith("unknown") else f"{expected}, {left} % vs {right} %")


def test_a_missing_number_is_unknown_even_when_the_run_is_too_short():
    assert Verdict("claim", "", "10.00", ">", steps=4).answer == "unknown (missing numbers)"


def test_equal_numbers_answer_no_and_say_equal():
    for relation in ("<", ">"):
        verdict = Verdict(f"ResNet-14 test error {relation} plain-14", "10.00", "10.0", relation, steps=64_000)
        assert verdict.answer == "no"
        assert verdict.line() == f"ResNet-14 test error {relation} plain-14: no, 10.00 % vs 10.0 % (equal)"


def comparison_of(claim: Claim) -> Comparison:
    return Comparison(kind="degradation", title="", short_title="", specs=[], panels=[], colours={}, paper={},
                      claims=[claim])


def group(name: str, label: str, steps: int) -> GroupResult:
    runs = [RunResult(RunSpec(name, seed, name, label), Path(f"{name}-seed{seed}"), {"steps": steps}, [])
            for seed in (0, 1)]
    return GroupResult(name, label, name, runs)


def two_groups(left: tuple[str, str], right: tuple[str, str], seeds: int = 2) -> Table:
    """A results table of the groups resnet20 and plain20 with these (test error %, its std) cells."""
    table = Table(RESULT_COLUMNS)
    for name, (error, std) in (("resnet20", left), ("plain20", right)):
        table.add(group=name, model=name, label=name, seeds=seeds, train_error_pct="1.00", train_error_std="0.10",
                  test_error_pct=error, test_error_std=std)
    return table


@pytest.mark.parametrize("left, right, seeds, within", [
    (("9.00", "0.50"), ("9.40", "0.20"), 2, True),  # gap 0.40, widest std 0.50
    (("9.00", "0.20"), ("9.50", "0.50"), 2, True),  # gap 0.50 = the widest std: still within
    (("9.00", "0.50"), ("9.51", "0.30"), 2, False),  # gap 0.51 > 0.50
    (("9.00", "0.00"), ("9.00", "0.00"), 2, False),  # no spread at all: nothing to be within
    (("9.00", "0.50"), ("9.40", "0.20"), 1, False),  # one seed: no spread is measured
])
def test_a_gap_within_the_widest_seed_std_is_not_conclusive(left, right, seeds, within):
    claim = Claim("resnet20", "test", "<", "plain20")
    groups = {"resnet20": group("resnet20", "ResNet-20", 64_000), "plain20": group("plain20", "plain-20", 6_400)}
    (verdict,) = verdicts(comparison_of(claim), two_groups(left, right, seeds), groups)
    assert (verdict.left, verdict.right, verdict.relation) == (left[0], right[0], "<")
    assert verdict.within_spread is within and verdict.steps == 6_400
    assert verdict.line().startswith("ResNet-20 test error < plain-20: ")
    assert verdict.line().endswith(NOT_CONCLUSIVE) is within


def test_verdicts_read_the_claims_split_and_skip_groups_not_trained():
    groups = {"resnet20": group("resnet20", "ResNet-20", 64_000), "plain20": group("plain20", "plain-20", 64_000)}
    table = two_groups(("9.00", "0.50"), ("12.00", "0.50"))
    train_claim = Claim("resnet20", "train", "<", "plain20")
    (verdict,) = verdicts(comparison_of(train_claim), table, groups)
    assert (verdict.left, verdict.right, verdict.answer) == ("1.00", "1.00", "no")
    assert verdicts(comparison_of(Claim("resnet56", "test", "<", "plain20")), table, groups) == []
