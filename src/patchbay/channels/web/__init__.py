"""The web chat channel: a single page served by the channel itself, its API proxied to the core."""
