"""What the API and the worker share: settings, the order message, AWS clients, logs."""
