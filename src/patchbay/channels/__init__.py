"""Channels: one process per access method, each reaching the core only through CoreClient."""
