"""The HTTP processes: the REST facade and the webhook receiver."""
