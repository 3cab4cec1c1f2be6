"""The order worker: drains the SQS queue with N concurrent asyncio payment slots."""
