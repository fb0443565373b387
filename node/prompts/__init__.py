"""Prompt templates as data (`templates.toml`), and their deterministic rendering.

Owns: loading the template set and filling placeholders from task payload
values. Executors never hold prompt text themselves. Rendering is a pure
function of (template set version, payload): no dates, no randomness, no
locale, so a replica or validator that renders the same payload with the same
`PROMPTS_VERSION` gets byte-identical messages (the chat template is applied
later, by the model's backend).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from typing import Any


class PromptError(KeyError):
    """A template or placeholder is missing from the template set."""


@dataclass(frozen=True)
class PromptSet:
    version: str
    sections: dict[str, dict[str, str]]

    def text(self, section: str, template: str, /) -> str:
        try:
            return self.sections[section][template]
        except KeyError:
            raise PromptError(f"no prompt template [{section}].{template} in prompt set {self.version}") from None

    def render(self, section: str, template: str, /, **values: Any) -> str:
        try:
            return Template(self.text(section, template)).substitute({k: str(v) for k, v in values.items()})
        except KeyError as exc:
            raise PromptError(f"prompt [{section}].{template} needs a value for {exc.args[0]!r}") from None

    def messages(self, section: str, /, user: str = "user", **values: Any) -> list[dict[str, str]]:
        """System + user chat messages for one task."""
        return [
            {"role": "system", "content": self.render(section, "system", **values)},
            {"role": "user", "content": self.render(section, user, **values)},
        ]


@cache
def load_prompts() -> PromptSet:
    raw = tomllib.loads(resources.files(__package__).joinpath("templates.toml").read_text("utf-8"))
    version = raw.pop("version")
    sections = {name: {k: str(v) for k, v in body.items()} for name, body in raw.items() if isinstance(body, dict)}
    return PromptSet(version=str(version), sections=sections)


PROMPTS_VERSION: str = load_prompts().version
