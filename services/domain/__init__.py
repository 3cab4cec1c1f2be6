"""The order domain: the message, the order state, the payment processor and the workflow.

Plumbing both services share (AWS clients, retry, group commit, settings, logs) stays in
services/common; this package holds what an order is and what happens to it.
"""
