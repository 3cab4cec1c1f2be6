"""The development harness: the local AWS, the topology and the services as processes.

One place for what `make run`, the bench and the tests all need: an environment that can
never reach a real AWS account (`env`), the topology Terraform owns on AWS (`topology`), the
local AWS as a child process (`local_aws`), the API and the worker as child processes
(`services`, and `follow` for asyncio callers), and `make run`'s launcher (`stack`) with its
live dashboard (`dashboard`). Neither service imports it.
"""
