"""Templates: conversations -> token ids + labels that match the model's own chat template.

``get_template(tokenizer, name)`` picks the model's chat template (or a registered one) and returns a
:class:`Template` whose ``encode`` output equals ``tokenizer.apply_chat_template`` token for token.
Importing this package does not import torch or transformers.
"""

from __future__ import annotations

from swiftkit.templates.errors import SequenceTooLong, TemplateError
from swiftkit.templates.registry import TemplateEntry
from swiftkit.templates.template import Template, get_template

__all__ = ["SequenceTooLong", "Template", "TemplateEntry", "TemplateError", "get_template"]
