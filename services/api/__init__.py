"""The order API: aiohttp, POST /orders/async (-> SNS) and POST /orders/sync (inline payment)."""
