"""`shop chaos`: the whole shop under a steady mixed load while faults strike at random,
then a check of the invariants a shop owner relies on.

Read in this order: runner.py (the run, top to bottom), stage.py (a broker node, maybe a
PostgreSQL cluster, and `shop up`, all throwaway), load.py (what the customers and the
admin do), faults.py (what goes wrong), observe.py (what the databases and the broker hold
at the end), invariants.py (what must be true of it), report.py (the table).
"""
