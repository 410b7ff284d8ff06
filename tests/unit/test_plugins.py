"""The plugin manager: built-ins through hooks, local plugin files, fail-fast errors, registries."""

import textwrap

import pytest

from swiftkit.plugins import BUILTIN_PLUGINS, PluginError, build_registries, get_plugin_manager
from swiftkit.registry import Registry, RegistryError


def _write(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_builtins_registered_through_hooks():
    pm = get_plugin_manager(entry_points=False)
    names = {pm.get_name(p) for p in pm.get_plugins()}
    assert set(BUILTIN_PLUGINS) <= names
    regs = build_registries(pm)
    assert "smollm2-135m-instruct" in regs.models
    assert "self-cognition" in regs.datasets
    assert "chatml" in regs.templates


def test_local_plugin_file_adds_template_and_loss(tmp_path):
    path = _write(tmp_path, "plugin.py", """
        import swiftkit
        from swiftkit.templates.registry import TemplateEntry

        @swiftkit.hookimpl
        def swiftkit_register_templates(registry):
            registry.register("my-fmt", TemplateEntry(name="my-fmt", chat_template="{{ messages }}"),
                              source="plugin.py")

        @swiftkit.hookimpl
        def swiftkit_get_loss(name, config):
            return (lambda outputs, labels, num_items_in_batch=None: 0) if name == "zero" else None
    """)
    pm = get_plugin_manager([path], entry_points=False)
    assert "my-fmt" in build_registries(pm).templates
    assert pm.hook.swiftkit_get_loss(name="zero", config=None) is not None
    assert pm.hook.swiftkit_get_loss(name="other", config=None) is None


def test_two_files_with_same_module_name_do_not_collide(tmp_path):
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    body = """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_get_trainer(name, config):
            return {tag!r} if name == {tag!r} else None
    """
    pa = _write(a, "plugin.py", body.format(tag="A"))
    pb = _write(b, "plugin.py", body.format(tag="B"))
    pm = get_plugin_manager([pa, pb], entry_points=False)
    assert pm.hook.swiftkit_get_trainer(name="A", config=None) == "A"
    assert pm.hook.swiftkit_get_trainer(name="B", config=None) == "B"


def test_plugin_that_fails_to_import_is_named(tmp_path):
    path = _write(tmp_path, "broken.py", "import not_a_real_module_xyz\n")
    with pytest.raises(PluginError, match=r"broken\.py.*failed to import.*not_a_real_module_xyz"):
        get_plugin_manager([path], entry_points=False)


def test_unknown_hook_implementation_fails_fast(tmp_path):
    path = _write(tmp_path, "typo.py", """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_get_los(name, config):
            return None
    """)
    with pytest.raises(PluginError, match=r"typo\.py.*swiftkit_get_los"):
        get_plugin_manager([path], entry_points=False)


def test_missing_plugin_file():
    with pytest.raises(PluginError, match="does not exist"):
        get_plugin_manager(["/nonexistent/plugin.py"], entry_points=False)


def test_registration_error_names_plugin(tmp_path):
    path = _write(tmp_path, "dup.py", """
        import swiftkit
        from swiftkit.templates.registry import TemplateEntry
        @swiftkit.hookimpl
        def swiftkit_register_templates(registry):
            registry.register("chatml", TemplateEntry(name="chatml", chat_template="x"), source="dup.py")
    """)
    pm = get_plugin_manager([path], entry_points=False)
    with pytest.raises(PluginError, match=r"dup\.py.*registered twice"):
        build_registries(pm)


def test_override_is_explicit(tmp_path):
    path = _write(tmp_path, "over.py", """
        import swiftkit
        from swiftkit.templates.registry import TemplateEntry
        @swiftkit.hookimpl
        def swiftkit_register_templates(registry):
            registry.register("chatml", TemplateEntry(name="chatml", chat_template="MINE"),
                              source="over.py", override=True)
    """)
    regs = build_registries(get_plugin_manager([path], entry_points=False))
    assert regs.templates.get("chatml").chat_template == "MINE"
    assert regs.templates.source("chatml") == "over.py"


def test_disabling_a_builtin():
    pm = get_plugin_manager(disabled=["swiftkit.train.plugin"], entry_points=False)
    assert pm.hook.swiftkit_get_trainer(name="default", config=None) is None


def test_registry_unknown_name_suggests():
    reg = Registry("model")
    reg.register("qwen2.5-7b-instruct", object(), source="t")
    with pytest.raises(RegistryError, match="did you mean 'qwen2.5-7b-instruct'"):
        reg.get("qwen2.5-7b-instruc")
    assert "QWEN2.5-7B-INSTRUCT" in reg


def test_late_plugin_is_replayed_into_built_registries():
    import types

    from swiftkit.models.registry import ModelEntry
    from swiftkit.plugins import register_plugin
    import swiftkit

    pm = get_plugin_manager(entry_points=False)
    regs = build_registries(pm)
    late = types.ModuleType("late_models")

    @swiftkit.hookimpl
    def swiftkit_register_models(registry):
        registry.register("late-model-1b", ModelEntry(name="late-model-1b", hf_id="me/late-1b"),
                          source="late_models")

    late.swiftkit_register_models = swiftkit_register_models
    assert "late-model-1b" not in regs.models
    register_plugin(pm, late, "late_models")
    assert regs.models.get("late-model-1b").hf_id == "me/late-1b"


def test_firstresult_selects_by_name_and_later_plugins_answer_first(tmp_path):
    one = _write(tmp_path, "one.py", """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_get_callback(name, config):
            return "one:" + name if name in ("a", "b") else None
    """)
    two = _write(tmp_path, "two.py", """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_get_callback(name, config):
            return "two:" + name if name == "b" else None
    """)
    pm = get_plugin_manager([one, two], entry_points=False)
    assert pm.hook.swiftkit_get_callback(name="a", config=None) == "one:a"
    assert pm.hook.swiftkit_get_callback(name="b", config=None) == "two:b"
    assert pm.hook.swiftkit_get_callback(name="c", config=None) is None


def test_plugins_list_shows_origin_and_hooks(tmp_path, capsys):
    from swiftkit.cli.main import main

    path = _write(tmp_path, "lossy.py", """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_get_loss(name, config):
            return None
        @swiftkit.hookimpl
        def swiftkit_choice_names(kind):
            return ["lossy", "lossier"] if kind == "loss" else None
    """)
    assert main(["plugins", "list", "--plugins", path]) == 0
    out = capsys.readouterr().out
    train = out.split("swiftkit.train.plugin\n", 1)[1].splitlines()
    assert train[0] == "    from:  builtin"
    assert "swiftkit_get_trainer" in train[1] and "swiftkit_get_tuner" in train[1]
    assert "    tuner: freeze, full, lora" in train[2:7]
    expected = f"file:{path}\n    from:  file {path}\n    hooks: swiftkit_choice_names, swiftkit_get_loss\n    loss: lossier, lossy\n"
    assert expected in out
    assert main(["plugins", "list", "--disable_plugins", "swiftkit.infer.plugin"]) == 0
    assert "swiftkit.infer.plugin" not in capsys.readouterr().out
