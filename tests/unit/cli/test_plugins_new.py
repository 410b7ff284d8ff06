"""`swiftkit plugins new`: the generated plugin distributions pass their own tests and install."""

from __future__ import annotations

import subprocess
import sys

import pytest
import tomllib
from distributions import install_offline, pip

from swiftkit.cli.main import main

KINDS = {"loss": "swiftkit_get_loss", "callback": "swiftkit_get_callback",
         "template": "swiftkit_register_templates"}


def new(*argv: str) -> int:
    return main(["plugins", "new", *argv])


@pytest.mark.parametrize("kind", list(KINDS))
def test_generated_plugin_passes_its_own_tests(kind, tmp_path, capsys):
    name = f"demo-{kind}"
    argv = [name, "--dir", str(tmp_path)] + ([] if kind == "loss" else ["--hook", kind])  # loss: default
    assert new(*argv) == 0
    target = tmp_path / f"swiftkit-{name}"
    package = f"swiftkit_demo_{kind}"
    assert f"created {target}/" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == [target]  # no staging folder left behind
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", f"{package}/__init__.py", f"{package}/plugin.py",
                     "tests/test_plugin.py"]

    meta = tomllib.loads((target / "pyproject.toml").read_text())
    assert meta["project"]["name"] == f"swiftkit-{name}"
    assert meta["project"]["entry-points"]["swiftkit"] == {f"demo_{kind}": f"{package}.plugin"}
    assert meta["tool"]["setuptools"]["packages"] == [package]
    assert meta["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
    assert meta["tool"]["pytest"]["ini_options"]["pythonpath"] == ["."]
    assert f"def {KINDS[kind]}(" in (target / package / "plugin.py").read_text()
    readme = (target / "README.md").read_text()
    assert f"pip install ./swiftkit-{name}" in readme and name in readme

    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=target, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert " passed" in output and "failed" not in output and "skipped" not in output


def test_name_is_normalised_to_a_package_name(tmp_path):
    assert new("My-Fancy-Loss", "--dir", str(tmp_path)) == 0
    target = tmp_path / "swiftkit-my-fancy-loss"
    meta = tomllib.loads((target / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["swiftkit"] == {"my_fancy_loss": "swiftkit_my_fancy_loss.plugin"}
    assert 'LOSS_NAME = "my-fancy-loss"' in (target / "swiftkit_my_fancy_loss" / "plugin.py").read_text()


@pytest.mark.parametrize("bad", ["my.loss", "2fast", "über-loss", "a b", "my/loss"])
def test_invalid_name_is_refused_and_nothing_is_written(bad, tmp_path, capsys):
    parent = tmp_path / "parent"
    assert new(bad, "--dir", str(parent)) == 2
    err = capsys.readouterr().err
    assert f"plugin name {bad!r} is not usable" in err and "Python identifier" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("existing", ["dir", "file"])
def test_existing_target_is_never_overwritten(existing, tmp_path, capsys):
    target = tmp_path / "swiftkit-taken"
    if existing == "dir":
        target.mkdir()
        (target / "mine.txt").write_text("keep me")
    else:
        target.write_text("keep me")
    assert new("taken", "--dir", str(tmp_path), "--hook", "callback") == 2
    err = capsys.readouterr().err
    assert f"{target} already exists" in err and "nothing was written" in err
    assert list(tmp_path.iterdir()) == [target]
    kept = target / "mine.txt" if existing == "dir" else target
    assert kept.read_text() == "keep me"
    if existing == "dir":
        assert list(target.iterdir()) == [kept]


def test_unknown_hook_kind_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        new("x", "--dir", str(tmp_path), "--hook", "optimizer")
    assert exc.value.code == 2
    assert "invalid choice: 'optimizer'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_installed_generated_plugin_is_an_entry_point(tmp_path):
    assert new("scaffold-probe", "--dir", str(tmp_path)) == 0
    target = tmp_path / "swiftkit-scaffold-probe"
    try:
        install_offline(target)
        code = (
            "from importlib.metadata import entry_points\n"
            "from swiftkit.commands import build_host\n"
            "from swiftkit.core.choices import choose\n"
            "print(sorted((e.name, e.value) for e in entry_points(group='swiftkit')))\n"
            "loss = choose(build_host(), 'loss', 'scaffold-probe', config=None)\n"
            "print(loss.__module__, loss.__name__)\n"
        )
        # Run outside the source folder, so the import can only come from the installed package.
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "('scaffold_probe', 'swiftkit_scaffold_probe.plugin')" in out.stdout
        assert "swiftkit_scaffold_probe.plugin causal_lm_loss" in out.stdout
    finally:
        pip("uninstall", "-y", "swiftkit-scaffold-probe")
