"""Tiny models and tokenizers built locally for tests (no hub access).

``make_tokenizer`` trains a byte-level BPE (vocab 512) in a few milliseconds and wraps it as a
``PreTrainedTokenizerFast``; ``save_tiny_model`` writes a 2-layer, hidden-64 random model plus that
tokenizer into a directory that plain ``transformers`` loads with ``from_pretrained``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
]

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello! How can I help you today?",
    "I am an AI assistant trained to answer questions.",
    "What is the capital of France? Paris is the capital of France.",
    "Write a poem about the sea and the sky.",
    "你好，我是一个人工智能助手。",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000",
    "system user assistant tool function name content role",
    "def add(a, b):\n    return a + b\n",
]

# ChatML without a default system prompt (Qwen2.5-like minus the default system).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# ChatML with a default system prompt inserted when the conversation has none (SmolLM2 / Qwen2 style).
CHATML_DEFAULT_SYSTEM_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named Tiny.<|im_end|>\n' }}"
    "{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Llama-3 style: BOS in the template, header ids, <|eot_id|> closes every turn, no trailing newline.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Gemma style: roles renamed (assistant -> model), system folded into the first user turn.
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

# Qwen2.5-like tool calling: the tool schemas go into the system turn inside <tools></tools>, each
# call is a JSON object inside <tool_call></tool_call>, and a run of tool results becomes one user
# turn with every result inside <tool_response></tool_response>.
QWEN25_TEMPLATE = (
    "{%- set first_is_system = messages and messages[0]['role'] == 'system' %}"
    "{%- if tools %}"
    "{{- '<|im_start|>system\n' }}"
    "{{- messages[0]['content'] if first_is_system else 'You are a helpful assistant.' }}"
    "{{- '\n\n# Tools\n\nThe functions you can call are listed in <tools></tools>:\n<tools>' }}"
    "{%- for tool in tools %}{{- '\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\n</tools>\n\nTo call a function, reply with one JSON object per call inside "
    "<tool_call></tool_call>:\n<tool_call>\n{\"name\": <name>, \"arguments\": <object>}\n"
    "</tool_call><|im_end|>\n' }}"
    "{%- elif first_is_system %}"
    "{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}"
    "{%- if not loop.first %}{{- raise_exception('a system message must come first') }}{%- endif %}"
    "{%- elif message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\n' + (message['content'] or '') }}"
    "{%- for call in message['tool_calls'] or [] %}"
    "{%- set fn = call['function'] if call['function'] is defined else call %}"
    "{%- if message['content'] or not loop.first %}{{- '\n' }}{%- endif %}"
    "{{- '<tool_call>\n{\"name\": \"' + fn['name'] + '\", \"arguments\": ' "
    "+ (fn['arguments'] | tojson) + '}\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\n' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{%- if loop.first or loop.previtem['role'] != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\n<tool_response>\n' + message['content'] + '\n</tool_response>' }}"
    "{%- if loop.last or loop.nextitem['role'] != 'tool' %}{{- '<|im_end|>\n' }}{%- endif %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)

TEMPLATES = {
    "chatml": CHATML_TEMPLATE,
    "chatml_default_system": CHATML_DEFAULT_SYSTEM_TEMPLATE,
    "llama3": LLAMA3_TEMPLATE,
    "gemma": GEMMA_TEMPLATE,
    "qwen25": QWEN25_TEMPLATE,
}

# Plain-text (not special) tokens a style adds on top of the trained vocabulary.
ADDED_TOKENS = {
    "qwen25": ["<tool_call>", "</tool_call>"],
}

_BOS_EOS = {
    "chatml": (None, "<|im_end|>"),
    "chatml_default_system": (None, "<|im_end|>"),
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "gemma": ("<s>", "<end_of_turn>"),
    "qwen25": (None, "<|im_end|>"),
    None: ("<s>", "</s>"),
}


def make_tokenizer(
    style: str | None = "chatml",
    extra_special_tokens: Sequence[str] = (),
    named_special_tokens: Mapping[str, str] | None = None,
):
    """A fast BPE tokenizer; ``style`` picks a chat template from TEMPLATES, None gives a base tokenizer.

    ``extra_special_tokens`` are added after the trained vocabulary (the trained ids do not move) as special tokens
    that never split; ``named_special_tokens`` adds tokens the same way under a name: ``{"image_token": "<image>"}``
    gives ``tok.image_token`` / ``tok.image_token_id``, also after a save and reload.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_CORPUS * 20, trainer=trainer)
    bos, eos = _BOS_EOS[style]
    named = dict(named_special_tokens or {})
    extra = list(dict.fromkeys([*extra_special_tokens, *named.values()]))
    kwargs = {"extra_special_tokens": extra, "model_specific_special_tokens": named} if extra else {}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=bos,
        eos_token=eos,
        pad_token="<|endoftext|>",
        unk_token=None,
        **kwargs,
    )
    tok.add_tokens(ADDED_TOKENS.get(style, []))
    if style is not None:
        tok.chat_template = TEMPLATES[style]
    return tok


def make_tiny_model(arch: str = "llama", vocab_size: int = 512, seed: int = 0):
    """A random 2-layer, hidden-64 causal LM of the given architecture family."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    common = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    if arch == "gpt2":
        config = AutoConfig.for_model(
            "gpt2", vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4, n_positions=512
        )
    else:
        if arch in ("gemma", "gemma2"):
            common["head_dim"] = 16
        config = AutoConfig.for_model(arch, **common)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    return model.eval()


def save_tiny_model(path: str | Path, arch: str = "llama", style: str | None = "chatml") -> Path:
    """Write a tiny model + tokenizer to ``path`` (loadable with plain from_pretrained)."""
    path = Path(path)
    tok = make_tokenizer(style)
    model = make_tiny_model(arch, vocab_size=len(tok))
    model.config.eos_token_id = tok.eos_token_id
    model.config.bos_token_id = tok.bos_token_id
    model.config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def probe_ids():
    """One fixed row of token ids (inside the tiny vocabulary) to compare a model's outputs on."""
    import torch

    return torch.tensor([[5, 17, 42, 99, 7, 3, 64, 12, 88, 30]])


def eval_logits(model):
    """``model``'s logits on :func:`probe_ids` in eval mode, without gradients."""
    import torch

    model.eval()
    with torch.no_grad():
        return model(input_ids=probe_ids()).logits
