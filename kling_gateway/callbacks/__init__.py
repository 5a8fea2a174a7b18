"""Callbacks to clients: target safety, the durable outbox's deliverer and signatures."""
