"""The LLM layer: the only code that imports Simon Willison's `llm` library.

Every model, local or remote, is an `llm` model here (async where it has an async variant); every
call is logged to an `llm` logs database in `llm`'s own schema, so `llm logs` reads it.
"""
