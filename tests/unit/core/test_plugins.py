"""The plugin host: built-ins through hooks, local plugin files, fail-fast errors naming the plugin, registries."""

import textwrap
import types

import pytest
from hosts import builtin_host

import swiftkit
from swiftkit.commands import builtin_plugins
from swiftkit.core.choices import choose
from swiftkit.core.errors import PluginError
from swiftkit.core.plugins import PluginHost
from swiftkit.core.registry import Registry, RegistryError


def _write(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_builtins_registered_through_hooks():
    host = builtin_host()
    assert {m.__name__ for m in builtin_plugins()} <= set(host.infos)
    regs = host.registries
    assert "smollm2-135m-instruct" in regs.models
    assert "self-cognition" in regs.datasets
    assert "chatml" in regs.templates
    assert host.registries is regs  # filled once per host


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
    host = builtin_host([path])
    assert "my-fmt" in host.registries.templates
    assert host.registries.templates.plugin("my-fmt") == f"file:{path}"
    assert host.first_answer("swiftkit_get_loss", name="zero", config=None)[0] is not None
    assert host.first_answer("swiftkit_get_loss", name="other", config=None) == (None, None)


def test_a_plugin_file_is_imported_once_per_host(tmp_path):
    counter = tmp_path / "imports.txt"
    path = _write(tmp_path, "counted.py", f"""
        import swiftkit
        with open({str(counter)!r}, "a") as fh:
            fh.write("x")

        @swiftkit.hookimpl
        def swiftkit_get_loss(name, config):
            return None
    """)
    host = builtin_host([path])
    host.registries  # noqa: B018 - registration hooks run
    assert counter.read_text() == "x"


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
    host = builtin_host([pa, pb])
    assert host.first_answer("swiftkit_get_trainer", name="A", config=None)[0] == "A"
    assert host.first_answer("swiftkit_get_trainer", name="B", config=None)[0] == "B"


def test_plugin_that_fails_to_import_is_named(tmp_path):
    path = _write(tmp_path, "broken.py", "import not_a_real_module_xyz\n")
    with pytest.raises(PluginError, match=r"broken\.py.*failed to import.*not_a_real_module_xyz"):
        builtin_host([path])


def test_hook_name_typo_names_plugin_and_suggests_the_hookspec(tmp_path):
    path = _write(tmp_path, "typo.py", """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_get_los(name, config):
            return None
    """)
    with pytest.raises(PluginError) as err:
        builtin_host([path])
    msg = str(err.value)
    assert f"plugin 'file:{path}' (file {path}) implements swiftkit_get_los" in msg
    assert "did you mean 'swiftkit_get_loss'" in msg and "<module" not in msg


def test_wrong_signature_shows_the_expected_one(tmp_path):
    path = _write(tmp_path, "args.py", """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_get_loss(nme, config):
            return None
    """)
    with pytest.raises(PluginError, match=r"swiftkit_get_loss\(nme, config\) does not match the hook; expected "
                                          r"swiftkit_get_loss\(name, config\).*unknown: nme"):
        builtin_host([path])


def test_unmarked_hook_function_is_an_error(tmp_path):
    path = _write(tmp_path, "unmarked.py", """
        def swiftkit_get_loss(name, config):
            return None
    """)
    with pytest.raises(PluginError, match=r"defines swiftkit_get_loss\(\) without @swiftkit.hookimpl"):
        builtin_host([path])


def test_missing_plugin_file():
    with pytest.raises(PluginError, match="does not exist"):
        builtin_host(["/nonexistent/plugin.py"])


def test_duplicate_registration_blames_the_plugin_that_registered_second(tmp_path):
    path = _write(tmp_path, "dup.py", """
        import swiftkit
        from swiftkit.templates.registry import TemplateEntry
        @swiftkit.hookimpl
        def swiftkit_register_templates(registry):
            # a misleading source text: the error must still name this plugin, not the built-in
            registry.register("chatml", TemplateEntry(name="chatml", chat_template="x"), source="somewhere else")
    """)
    with pytest.raises(PluginError) as err:
        builtin_host([path]).registries  # noqa: B018
    msg = str(err.value)
    assert msg.startswith(f"plugin 'file:{path}' (file {path}) failed in swiftkit_register_templates")
    assert "first by plugin 'swiftkit.templates.plugin'" in msg


def test_exception_in_a_registration_hook_names_plugin_hook_and_exception(tmp_path):
    path = _write(tmp_path, "raises.py", """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_register_datasets(registry):
            raise KeyError("oops")
    """)
    with pytest.raises(PluginError, match=r"plugin 'file:.*raises\.py' .* failed in swiftkit_register_datasets: "
                                          r"KeyError: 'oops'"):
        builtin_host([path]).registries  # noqa: B018


def test_exception_in_a_choice_hook_names_the_plugin(tmp_path):
    path = _write(tmp_path, "bad_loss.py", """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_get_loss(name, config):
            return 1 / 0
    """)
    with pytest.raises(PluginError, match=r"bad_loss\.py.*failed in swiftkit_get_loss: ZeroDivisionError"):
        choose(builtin_host([path]), "loss", "anything", config=None)


def test_override_is_explicit(tmp_path):
    path = _write(tmp_path, "over.py", """
        import swiftkit
        from swiftkit.templates.registry import TemplateEntry
        @swiftkit.hookimpl
        def swiftkit_register_templates(registry):
            registry.register("chatml", TemplateEntry(name="chatml", chat_template="MINE"),
                              source="over.py", override=True)
    """)
    regs = builtin_host([path]).registries
    assert regs.templates.get("chatml").chat_template == "MINE"
    assert regs.templates.source("chatml") == "over.py"


def test_disabling_a_builtin():
    host = builtin_host(disabled=["swiftkit.train.plugin"])
    assert host.first_answer("swiftkit_get_trainer", name="default", config=None) == (None, None)


def test_registry_unknown_name_suggests():
    reg = Registry("model")
    reg.register("qwen2.5-7b-instruct", object(), source="t")
    with pytest.raises(RegistryError, match="did you mean 'qwen2.5-7b-instruct'"):
        reg.get("qwen2.5-7b-instruc")
    assert "QWEN2.5-7B-INSTRUCT" in reg


def test_late_plugin_registers_into_built_registries():
    from swiftkit.models.registry import ModelEntry

    host = builtin_host()
    regs = host.registries
    late = types.ModuleType("late_models")

    @swiftkit.hookimpl
    def swiftkit_register_models(registry):
        registry.register("late-model-1b", ModelEntry(name="late-model-1b", hf_id="me/late-1b"),
                          source="late_models")

    late.swiftkit_register_models = swiftkit_register_models
    assert "late-model-1b" not in regs.models
    host.register(late, "late_models")
    assert regs.models.get("late-model-1b").hf_id == "me/late-1b"
    assert regs.models.registered_by("late_models") == ["late-model-1b"]


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
    host = builtin_host([one, two])
    assert host.first_answer("swiftkit_get_callback", name="a", config=None) == ("one:a", f"file:{one}")
    assert host.first_answer("swiftkit_get_callback", name="b", config=None) == ("two:b", f"file:{two}")
    assert host.first_answer("swiftkit_get_callback", name="c", config=None) == (None, None)


def test_tolerant_host_records_broken_plugins_instead_of_raising(tmp_path):
    good = _write(tmp_path, "good.py", """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_get_loss(name, config):
            return None
    """)
    broken = _write(tmp_path, "broken.py", "raise RuntimeError('cannot start')\n")
    failing = _write(tmp_path, "failing.py", """
        import swiftkit
        @swiftkit.hookimpl
        def swiftkit_register_rewards_typo(registry):
            pass
    """)
    host = PluginHost.build(builtin_plugins(), [good, broken, failing], entry_points=False, tolerant=True)
    assert host.infos[f"file:{good}"].error is None
    assert "failed to import: RuntimeError: cannot start" in host.infos[f"file:{broken}"].error
    assert "swiftkit_register_rewards_typo, which is not a swiftkit hook" in host.infos[f"file:{failing}"].error
    assert "smollm2-135m-instruct" in host.registries.models  # the rest still works


def test_plugins_list_shows_origin_hooks_and_what_each_plugin_registered(tmp_path, capsys):
    from swiftkit.cli.main import main

    path = _write(tmp_path, "lossy.py", """
        import swiftkit
        from swiftkit.templates.registry import TemplateEntry
        @swiftkit.hookimpl
        def swiftkit_get_loss(name, config):
            return None
        @swiftkit.hookimpl
        def swiftkit_choice_names(kind):
            return ["lossy", "lossier"] if kind == "loss" else None
        @swiftkit.hookimpl
        def swiftkit_register_templates(registry):
            registry.register("lossy-fmt", TemplateEntry(name="lossy-fmt", chat_template="{{ messages }}"))
    """)
    assert main(["plugins", "list", "--plugins", path]) == 0
    out = capsys.readouterr().out
    train = out.split("swiftkit.train.plugin\n", 1)[1].splitlines()
    assert train[0] == "    from:  builtin"
    assert "swiftkit_get_trainer" in train[1] and "swiftkit_get_tuner" in train[1]
    assert "    tuner: adalora, boft, freeze, full, ia3, llamapro, loha, lokr, ... (13)" in train[2:7]
    assert "    registered rewards: accuracy, format, length" in train[2:12]
    expected = (f"file:{path}\n    from:  file {path}\n    hooks: swiftkit_choice_names, swiftkit_get_loss, "
                "swiftkit_register_templates\n    loss: lossier, lossy\n    registered templates: lossy-fmt\n")
    assert expected in out
    assert main(["plugins", "list", "--disable_plugins", "swiftkit.inference.plugin"]) == 0
    assert "swiftkit.inference.plugin" not in capsys.readouterr().out
    assert main(["plugins", "list", "-p", "no:swiftkit.evaluate.plugin"]) == 0
    assert "swiftkit.evaluate.plugin" not in capsys.readouterr().out


def test_plugins_list_reports_a_broken_plugin_and_exits_1(tmp_path, capsys):
    from swiftkit.cli.main import main

    path = _write(tmp_path, "broken.py", "import not_a_real_module_xyz\n")
    assert main(["plugins", "list", "--plugins", path]) == 1
    out = capsys.readouterr().out
    assert f"file:{path}\n    from:  file {path}\n    BROKEN: " in out
    assert "No module named 'not_a_real_module_xyz'" in out
    assert "swiftkit.train.plugin" in out and out.rstrip().endswith(", 1 broken")
