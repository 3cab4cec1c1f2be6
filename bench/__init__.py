"""The benchmark: the sync-vs-async experiment and the local AWS's own costs, on this machine."""
