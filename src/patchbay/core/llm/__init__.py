"""The LLM layer: the only code that imports Simon Willison's `llm` library.

Every model, local or remote, is an `llm` async model here; every call is logged to an `llm` logs
database in `llm`'s own schema, so `llm logs` reads it.
"""
