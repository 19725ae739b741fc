"""`shop up` as a real process for tests: the one copy lives in shop/running_shop.py."""

from shop.local_servers import free_port
from shop.running_shop import RunningShop, answers, running_shop

__all__ = ["RunningShop", "answers", "free_port", "running_shop"]
