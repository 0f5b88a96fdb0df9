"""The tools of the `secret_tools` service (llama-index turns each function's signature
and docstring into its JSON Schema and description).

No `from __future__ import annotations`: llama-index reads the annotations.
"""


def get_the_secret_fact() -> str:
    """Returns the secret fact."""
    return "The secret fact is: A baby llama is called a 'Cria'."


def add(a: int, b: int) -> int:
    """Adds two integers."""
    return a + b
