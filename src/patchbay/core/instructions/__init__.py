"""The instruction API (seed 003): decode, check, execute and record `{"type", "data"}` messages."""
