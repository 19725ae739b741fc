"""docs/labs.md is generated from the lab modules; the committed page must be the current one,
and every lab must be complete enough to run and to document."""

from pathlib import Path

from shop.labs import LABS
from shop.labs.docs import render

DOCS = Path(__file__).resolve().parents[2] / "docs" / "labs.md"


def test_docs_labs_md_is_generated_from_the_labs():
    assert DOCS.read_text() == render(), (
        "docs/labs.md is stale: run `.venv/bin/shop lab docs > docs/labs.md`"
    )


def test_every_lab_has_a_unique_name_a_measurement_and_its_story():
    names = [lab.name for lab in LABS]
    assert len(set(names)) == len(names)
    for lab in LABS:
        assert lab.measure_figures is not None, lab.name
        assert lab.explanation and lab.question.endswith("?"), lab.name
        assert lab.sound.label != lab.broken.label, lab.name
