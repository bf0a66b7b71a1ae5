"""The WebSocket job channel (seed 002): `add` jobs, `listen` to them, `cancel` them, on `/ws/`."""
