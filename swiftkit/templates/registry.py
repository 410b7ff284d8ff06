"""Registered template entries and the YAML files that define them.

A template file (``swiftkit/templates/registered/<name>.yaml``) holds one jinja chat template for
models whose tokenizer has none. This module checks a file's schema and jinja syntax so that a typo
names the file and the key. No torch / transformers imports here: the plugin manager imports this
module at CLI start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from swiftkit.core.cards import check_mapping, read_yaml
from swiftkit.templates.errors import TemplateError

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

# key -> (accepted type, required)
_KEYS: dict[str, tuple[type, bool]] = {
    "name": (str, True),
    "chat_template": (str, True),
    "stop_words": (list, False),
    "description": (str, False),
    "override": (bool, False),
}


@dataclass
class TemplateEntry:
    """One registered chat template.

    ``chat_template`` is jinja in the format of ``tokenizer.chat_template`` (it sees ``messages``,
    ``add_generation_prompt``, ``bos_token``, ``eos_token``). ``stop_words`` end generation; the
    ones that are a single token become stop token ids. ``override`` replaces an entry of the same
    name registered before.
    """

    name: str
    chat_template: str
    stop_words: list[str] = field(default_factory=list)
    description: str = ""
    override: bool = False

    def __post_init__(self):
        if not isinstance(self.name, str) or not NAME.match(self.name):
            raise TemplateError(
                f"template name {self.name!r} must be lowercase letters, digits, '.', '_' or '-'"
            )
        if not isinstance(self.chat_template, str) or not self.chat_template.strip():
            raise TemplateError(f"template {self.name!r}: chat_template must be a non-empty string")
        if not isinstance(self.stop_words, list) or not all(
            isinstance(w, str) and w for w in self.stop_words
        ):
            raise TemplateError(f"template {self.name!r}: stop_words must be a list of non-empty strings")


def check_jinja(source: str) -> None:
    """Raise ``jinja2.TemplateSyntaxError`` when ``source`` does not parse as a chat template."""
    import jinja2  # defers jinja2

    # The extensions transformers enables when it renders chat templates.
    env = jinja2.Environment(extensions=["jinja2.ext.loopcontrols"])
    env.parse(source)


def load_template_file(path: str | Path) -> TemplateEntry:
    """Read and validate one template YAML file; every error names the file (and key or line)."""
    path = Path(path)
    data = read_yaml(path, TemplateError, "template file")
    check_mapping(data, _KEYS, str(path), TemplateError)
    try:
        check_jinja(data["chat_template"])
    except Exception as exc:  # jinja2.TemplateSyntaxError carries the line inside the template
        line = getattr(exc, "lineno", None)
        where = f" (template line {line})" if line else ""
        raise TemplateError(f"{path}: key 'chat_template' is not valid jinja{where}: {exc}") from exc
    try:
        return TemplateEntry(**data)
    except TemplateError as exc:
        raise TemplateError(f"{path}: {exc}") from exc
