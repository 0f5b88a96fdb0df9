"""A human service's prompt template: text with one ``{input_str}`` field.

    check_prompt("Please review this draft:\\n\\n{input_str}")    # returns it
    check_prompt("Hello {name}")                                 # ValueError

Checked where the template is given (the deployment file, HumanService) so that a bad
one fails before anything starts, not when the first question is asked.
"""

from __future__ import annotations

import string

INPUT_FIELD = "input_str"


def check_prompt(prompt: str) -> str:
    """`prompt` if its only field is ``{input_str}``; ValueError naming what is wrong."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(prompt) if f is not None}
    except ValueError as err:
        raise ValueError(f"the prompt is not a valid template: {err}") from None
    if fields != {INPUT_FIELD}:
        raise ValueError(
            "the prompt must contain {input_str} (where the question goes) and no other "
            f"field; it has {sorted(fields) or 'none'} (write {{{{ and }}}} for braces)"
        )
    return prompt
