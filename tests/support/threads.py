"""Run a relay or consumer (anything with .run(stop)) in a thread; see `start_in_thread`.
The one copy lives in shop/in_process.py (the labs use it too)."""

from shop.in_process import Running

__all__ = ["Running"]
