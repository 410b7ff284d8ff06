"""The Ollama Modelfile: FROM, SYSTEM, stop and sampling lines, and a TEMPLATE whose fixed strings are exactly the
text the jinja chat template renders around each role's content.

The expected strings are found here by rendering growing conversations with the tokenizer and taking the text
each new message adds (the writer instead cuts one rendering at placeholder contents), and for the known tiny
templates they are also checked against the literal strings of the template source.
"""

from __future__ import annotations

import pytest
from tiny import make_tokenizer

from swiftkit.exporters.ollama import ModelfileError, quote, write_modelfile
from swiftkit.templates.template import Template

CONTENT = "{{ .Content }}"


def _render(tok, messages, generation=False):
    msgs = [{"role": role, "content": text} for role, text in messages]
    return tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=generation)


def _around(block: str, content: str) -> tuple[str, str]:
    before, after = block.split(content)
    return before, after


def _expected(tok) -> dict:
    """Each role's prefix and suffix, the generation prompt and the text before a first message, from growing
    renderings: every new message appends its own block."""
    user_only = _render(tok, [("user", "Ux")])
    with_reply = _render(tok, [("user", "Ux"), ("assistant", "Ay")])
    two_users = _render(tok, [("user", "Ux"), ("assistant", "Ay"), ("user", "Uz")])
    assert with_reply.startswith(user_only) and two_users.startswith(with_reply)
    user_prefix, user_suffix = _around(two_users[len(with_reply):], "Uz")
    assistant_prefix, assistant_suffix = _around(with_reply[len(user_only):], "Ay")
    first_user, _ = _around(user_only, "Ux")
    first_system, between = _around(_around(_render(tok, [("system", "Sw"), ("user", "Ux")]), "Ux")[0], "Sw")
    return {
        "user": (user_prefix, user_suffix), "assistant": (assistant_prefix, assistant_suffix),
        "generation": _render(tok, [("user", "Ux")], True)[len(user_only):],
        "first_other": first_user[: len(first_user) - len(user_prefix)],
        "first_system": first_system, "system_suffix": between[: len(between) - len(user_prefix)],
    }


def _template_text(modelfile: str) -> str:
    start = modelfile.index('TEMPLATE """') + len('TEMPLATE """')
    return modelfile[start:modelfile.index('"""\n', start)]


def _write(tmp_path, style, system=None, stop_words=(), **kwargs):
    tok = make_tokenizer(style)
    template = Template(tok, "own", tok.chat_template, system=system, stop_words=list(stop_words))
    path = write_modelfile(tmp_path, "model-q8_0.gguf", template, **kwargs)
    return tok, template, path.read_text(encoding="utf-8")


def _first(text: str) -> str:
    return f"{{{{ if eq $i 0 }}}}{text}{{{{ end }}}}" if text else ""


def test_chatml_with_default_system_template_strings_match_the_rendering(tmp_path):
    tok, template, modelfile = _write(tmp_path, "chatml_default_system", system="You are Nova.",
                                      stop_words=["<|endoftext|>"])
    lines = modelfile.splitlines()
    assert "FROM ./model-q8_0.gguf" in lines
    assert 'SYSTEM """You are Nova."""' in lines
    stops = [line for line in lines if line.startswith("PARAMETER stop ")]
    assert stops == [f'PARAMETER stop "{tok.decode([i])}"' for i in template.stop_token_ids]
    assert stops == ['PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|endoftext|>"']

    want, text = _expected(tok), _template_text(modelfile)
    assert want["user"] == ("<|im_start|>user\n", "<|im_end|>\n")  # the literals of the template source
    assert want["first_other"] == "<|im_start|>system\nYou are a helpful AI assistant named Tiny.<|im_end|>\n"
    (user_prefix, user_suffix), (assistant_prefix, assistant_suffix) = want["user"], want["assistant"]
    assert (f'{{{{ if eq .Role "system" }}}}{want["first_system"]}{CONTENT}{want["system_suffix"]}'
            f'{{{{ else if eq .Role "user" }}}}') in text
    assert (f'{{{{ else if eq .Role "user" }}}}{_first(want["first_other"])}{user_prefix}{CONTENT}{user_suffix}'
            f'{{{{ if $last }}}}{want["generation"]}{{{{ end }}}}{{{{ else if eq .Role "assistant" }}}}') in text
    assert (f'{{{{ else if eq .Role "assistant" }}}}{_first(want["first_other"])}{assistant_prefix}{CONTENT}'
            f'{{{{ if not $last }}}}{assistant_suffix}{{{{ end }}}}{{{{ end }}}}{{{{ end }}}}') in text
    assert text.startswith("{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}")


def test_llama3_template_keeps_the_bos_it_writes_and_its_headers(tmp_path):
    tok, template, modelfile = _write(tmp_path, "llama3")
    want, text = _expected(tok), _template_text(modelfile)
    assert want["first_other"] == "<|begin_of_text|>" and want["generation"].startswith("<|start_header_id|>")
    assert f"{want['user'][0]}{CONTENT}{want['user'][1]}{{{{ if $last }}}}{want['generation']}{{{{ end }}}}" in text
    assert f"{want['assistant'][0]}{CONTENT}{{{{ if not $last }}}}{want['assistant'][1]}{{{{ end }}}}" in text
    assert _first(want["first_other"]) in text and "SYSTEM" not in modelfile
    assert [line for line in modelfile.splitlines() if "stop" in line] == ['PARAMETER stop "<|eot_id|>"']


def test_a_bos_the_tokenizer_adds_itself_is_left_out_of_the_template(tmp_path):
    from tokenizers import processors

    tok = make_tokenizer("llama3")
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    template = Template(tok, "own", tok.chat_template)
    text = _template_text(write_modelfile(tmp_path, "m.gguf", template).read_text(encoding="utf-8"))
    assert "<|begin_of_text|>" not in text and "<|start_header_id|>user<|end_header_id|>\n\n" in text


def test_a_template_taking_only_a_first_system_message_renders_no_later_one(tmp_path):
    tok, _, modelfile = _write(tmp_path, "qwen25")
    text = _template_text(modelfile)
    want = _expected(tok)
    assert (f'{{{{ if eq .Role "system" }}}}{{{{ if eq $i 0 }}}}{want["first_system"]}{CONTENT}'
            f'{want["system_suffix"]}{{{{ end }}}}') in text


def test_a_template_folding_the_system_prompt_into_the_user_turn_is_refused(tmp_path):
    with pytest.raises(ModelfileError) as err:
        _write(tmp_path, "gemma")
    assert "--to_ollama" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "Modelfile").exists()


def test_template_text_with_braces_is_written_as_go_literal_text(tmp_path):
    """``{{`` in the chat template's text, and a ``{`` just before ``{{ .Content }}``, must not open actions."""
    tok = make_tokenizer("chatml")
    source = ("{% for message in messages %}{{ '{{' + message['role'] + '}}: {' + message['content'] + '\n' }}"
              "{% endfor %}{% if add_generation_prompt %}{{ '{{assistant}}: ' }}{% endif %}")
    tok.chat_template = source
    text = _template_text(write_modelfile(tmp_path, "m.gguf", Template(tok, "own", source)).read_text())
    open_braces, one_brace = '{{ "{{" }}', '{{ "{" }}'
    assert (f"{open_braces}user}}}}: {one_brace}{CONTENT}\n{{{{ if $last }}}}{open_braces}assistant}}}}: "
            "{{ end }}") in text


def test_sampling_parameters_and_context_length(tmp_path):
    from transformers import GenerationConfig

    sampled = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=20, repetition_penalty=1.1)
    *_, modelfile = _write(tmp_path, "chatml", generation_config=sampled, context_length=4096)
    params = [line for line in modelfile.splitlines() if line.startswith("PARAMETER") and "stop" not in line]
    assert params == ["PARAMETER num_ctx 4096", "PARAMETER temperature 0.7", "PARAMETER top_p 0.9",
                      "PARAMETER top_k 20", "PARAMETER repeat_penalty 1.1"]
    *_, modelfile = _write(tmp_path, "chatml", generation_config=GenerationConfig(do_sample=False))
    assert [line for line in modelfile.splitlines() if "temperature" in line] == ["PARAMETER temperature 0"]
    *_, modelfile = _write(tmp_path, "chatml", generation_config=GenerationConfig())
    assert [line for line in modelfile.splitlines() if line.startswith("PARAMETER")] == ['PARAMETER stop "<|im_end|>"']


def test_values_are_quoted_so_the_modelfile_reads_them_back_whole():
    system = 'Be "brief".\n  Say """hi""" then\tstop.\n'
    assert quote(system, "the system prompt", triple=True) == f'"""{system}"""'
    assert quote("<|im_end|>", "a stop token") == '"<|im_end|>"'
    assert quote("two\nlines", "a stop token") == '"""two\nlines"""'
    with pytest.raises(ModelfileError, match="line ending in"):
        quote('ends with quotes """\nmore', "the system prompt", triple=True)
    with pytest.raises(ModelfileError, match="cannot hold"):
        quote("zero\u200bwidth", "the system prompt", triple=True)


def test_a_system_prompt_for_a_template_without_system_messages_is_refused(tmp_path):
    tok = make_tokenizer("chatml")
    source = ("{% for message in messages %}{% if message['role'] == 'system' %}{{ raise_exception('no system') }}"
              "{% endif %}{{ message['role'] + ': ' + message['content'] + '\n' }}{% endfor %}"
              "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}")
    text = _template_text(write_modelfile(tmp_path, "m.gguf", Template(tok, "own", source)).read_text())
    assert '"system"' not in text and f'{{{{ if eq .Role "user" }}}}user: {CONTENT}\n' in text
    with pytest.raises(ModelfileError, match="takes no system message"):
        write_modelfile(tmp_path, "m.gguf", Template(tok, "own", source, system="Be brief."))
