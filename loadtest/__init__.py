"""Load tests that talk to a running shop through HTTP only (see README, "Load tests")."""
