"""Workers: processes that run generation jobs taken from RabbitMQ."""
