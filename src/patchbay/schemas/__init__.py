"""Wire models shared by the core API and the core client."""
