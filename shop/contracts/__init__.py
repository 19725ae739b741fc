"""Documents generated from the code, so that they never drift from it: the AsyncAPI 3.0
description of every event and queue (asyncapi.py, from the catalog and the event models),
written to docs/ with docs/labs.md (from shop/labs/) by `shop docs`, which a test runs with
`--check` (generated.py)."""
