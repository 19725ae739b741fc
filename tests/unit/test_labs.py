"""The labs without a broker: every lab is complete enough to run and to document; a
report's verdict and exit code follow what the lab teaches. (That docs/labs.md, generated
from them, is current: tests/unit/test_generated_docs.py.)"""

import pytest

from shop.labs import LABS
from shop.labs.runner import Report


def test_every_lab_has_a_unique_name_a_measurement_and_its_story():
    names = [lab.name for lab in LABS]
    assert len(set(names)) == len(names)
    for lab in LABS:
        assert lab.measure_figures is not None, lab.name
        assert lab.explanation and lab.question.endswith("?"), lab.name
        assert lab.sound.label != lab.broken.label, lab.name


@pytest.mark.parametrize(
    ("variant", "holds", "error", "could_not_run", "exit_code"),
    [
        ("sound", True, None, False, 0),  # the guarantee held, as it must
        ("broken", False, None, False, 0),  # the failure the broken variant is there to show
        ("sound", False, None, False, 1),  # the sound variant broke its guarantee
        ("broken", True, None, False, 1),  # the broken variant showed nothing
        ("sound", None, "crashed: ValueError: x", False, 1),
        ("broken", None, "could not run: no broker", True, 2),
    ],
)
def test_the_exit_code_says_whether_the_variant_behaved_as_its_lab_teaches(
    variant, holds, error, could_not_run, exit_code
):
    report = Report("inbox", variant, holds, {}, "", error=error, could_not_run=could_not_run)
    assert report.exit_code == exit_code
    assert report.as_json()["as_taught"] is (exit_code == 0)
