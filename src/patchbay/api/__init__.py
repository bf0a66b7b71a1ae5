"""The core's HTTP API (FastAPI): thin routes over the hub's services."""
