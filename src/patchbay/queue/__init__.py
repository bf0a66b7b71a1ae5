"""The job queue and event bus: ports with an in-process implementation (RabbitMQ comes later)."""
