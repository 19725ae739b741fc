"""The `shop` command: the one place that wires every service together.

cli (the commands), processes (what `shop up` runs), supervisor (runs and restarts them).
The services never import this package; it imports them.
"""
