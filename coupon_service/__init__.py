"""The coupon service: coupons, its RPC server and rewards (built in the next issue)."""
