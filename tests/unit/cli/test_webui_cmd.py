"""`swiftkit web-ui`: its flags, the bind rule (loopback, or --api_key), and no gradio import for --help."""

import socket
import subprocess
import sys

import pytest

from swiftkit.cli.main import main
from swiftkit.cli.webui_cmd import is_loopback, webui_parser

SWIFTKIT = [sys.executable, "-m", "swiftkit.cli.main"]


def test_help_lists_the_flags_without_importing_gradio_or_torch():
    code = (
        "import sys, io, contextlib\n"
        "from swiftkit.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    main(['--help'])\n"
        "    try:\n        main(['web-ui', '--help'])\n    except SystemExit:\n        pass\n"
        "print(out.getvalue())\n"
        "print([m for m in ('gradio', 'torch', 'fastapi') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.rstrip().endswith("[]"), out[-500:]
    assert "  web-ui" in out  # listed by `swiftkit --help`
    for flag in ("--host", "--port", "--lang", "--share", "--api_key", "--api_key_file", "--workdir"):
        assert flag in out


def test_defaults_bind_to_localhost():
    args = webui_parser().parse_args([])
    assert (args.host, args.port, args.lang, args.share, args.api_key, args.workdir) == \
        ("127.0.0.1", 7860, "en", False, None, ".")


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("127.0.0.5", True), ("::1", True),
                                            ("localhost", True), ("0.0.0.0", False), ("192.168.1.10", False),
                                            ("::", False), ("myhost.example", False)])
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize("argv, shown", [(["--host", "0.0.0.0"], "--host 0.0.0.0"), (["--share"], "--share")])
def test_other_machines_need_an_api_key(argv, shown, capsys):
    assert main(["web-ui", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"swiftkit web-ui: warning: {shown} serves the UI beyond this machine")
    assert err[1] == (f"swiftkit web-ui: error: {shown} needs --api_key KEY or --api_key_file PATH (the page "
                      "then asks for user 'swiftkit' and the key)")
    assert len(err) == 2


@pytest.mark.parametrize("argv, message", [
    (["--api_key", ""], "--api_key must not be empty"),
    (["--api_key", "k", "--api_key_file", "f"], "give --api_key or --api_key_file, not both"),
    (["--api_key_file", "{tmp}/missing"], "--api_key_file '{tmp}/missing': No such file or directory"),
    (["--api_key_file", "{tmp}/empty"], "--api_key_file '{tmp}/empty': its first line is empty"),
])
def test_a_bad_key_is_one_line(argv, message, tmp_path, capsys):
    (tmp_path / "empty").write_text("\n")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(["web-ui", "--host", "0.0.0.0", *argv]) == 2
    assert capsys.readouterr().err == f"swiftkit web-ui: error: {message.replace('{tmp}', str(tmp_path))}\n"


def test_unknown_language_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["web-ui", "--lang", "fr"])
    assert exc.value.code == 2
    assert "argument --lang: invalid choice: 'fr'" in capsys.readouterr().err


def test_missing_gradio_is_one_line():
    code = ("import sys; sys.modules['gradio'] = None  # as if it were not installed\n"
            "from swiftkit.cli.main import main; sys.exit(main(['web-ui', '--port', '0']))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("swiftkit web-ui: error: gradio is not installed: install swiftkit[webui] "
                                   "(pip install 'swiftkit[webui]')")


def test_a_port_in_use_is_one_line(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["web-ui", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"swiftkit web-ui: error: cannot listen on 127.0.0.1:{port}: ")
    assert err.endswith("choose another --port") and "\n" not in err
