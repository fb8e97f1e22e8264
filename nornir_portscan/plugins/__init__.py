"""nornir plugins: tasks, the subnet inventory and a progress processor.

Nothing is imported here on purpose: nornir loads the inventory plugin through
this package at ``InitNornir`` time, and that must not pull in the engine.
"""
