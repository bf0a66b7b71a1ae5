"""Running every module as its own process under supervisord, driven over its XML-RPC interface."""
