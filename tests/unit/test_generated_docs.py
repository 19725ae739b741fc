"""The documents generated from the code (docs/asyncapi.yaml from the catalog, docs/labs.md
from the labs) are committed as the code generates them now."""

from shop.contracts import generated


def test_every_generated_document_is_current():
    assert generated.stale() == [], "run `shop docs` and commit what it wrote"
