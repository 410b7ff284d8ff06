"""Helpers for template tests: conversations and a way to read back what a label mask covers."""

from __future__ import annotations

IGNORE = -100

THREE_ROUNDS = [
    {"role": "user", "content": "Hello! Who are you?"},
    {"role": "assistant", "content": "I am an AI assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris is the capital of France."},
    {"role": "user", "content": "Write a poem about the sea."},
    {"role": "assistant", "content": "The sea and the sky, 你好."},
]
REPLIES = [m["content"] for m in THREE_ROUNDS if m["role"] == "assistant"]

# End-of-turn token each tokenizer style in tests/tiny.py writes after a reply.
END_OF_TURN = {
    "chatml": "<|im_end|>",
    "chatml_default_system": "<|im_end|>",
    "llama3": "<|eot_id|>",
    "gemma": "<end_of_turn>",
}


def labelled_spans(tokenizer, encoded: dict) -> list[str]:
    """The text of each run of consecutive labelled tokens (labels must equal the ids there)."""
    spans, run = [], []
    for token, label in zip(encoded["input_ids"], encoded["labels"]):
        if label == IGNORE:
            if run:
                spans.append(run)
                run = []
            continue
        assert label == token
        run.append(token)
    if run:
        spans.append(run)
    return [tokenizer.decode(ids) for ids in spans]


def chat_ids(tokenizer, messages, **kwargs) -> list[int]:
    """What transformers itself produces for the conversation: the reference for parity."""
    return list(tokenizer.apply_chat_template(messages, tokenize=True, **kwargs)["input_ids"])


def conversation() -> list[dict]:
    """A fresh copy of the three-round conversation."""
    return [dict(m) for m in THREE_ROUNDS]
