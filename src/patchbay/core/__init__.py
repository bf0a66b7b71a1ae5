"""The domain: users, chats, turns and the model catalog, with no HTTP, CLI or SQL dialect in it."""
