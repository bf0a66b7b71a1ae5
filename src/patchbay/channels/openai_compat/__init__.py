"""The OpenAI-compatible channel: `/v1/chat/completions` and `/v1/models`, on 127.0.0.1:11435."""
