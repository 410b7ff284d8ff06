"""``--push_to_hub``: upload a finished export folder to ModelScope, or to the Hugging Face hub with ``--use_hf``.

:func:`push_folder` creates ``--hub_model_id`` when missing (private with ``--hub_private_repo``; an existing
repository is kept as it is) and uploads every file of the folder in one commit of ``--commit_message``.
``--hub_endpoint`` points either client at another address (a private mirror); without it each client uses its
own default (https://huggingface.co or HF_ENDPOINT; https://modelscope.cn or MODELSCOPE_ENDPOINT). Credentials
are the clients' own: ``hf auth login`` / HF_TOKEN, ``modelscope login`` / MODELSCOPE_API_TOKEN.

Whatever goes wrong (no token, a refused token, a missing namespace, no network) is one
:class:`HubPushError` line naming the hub, the repository, the step, the HTTP status and the login hint.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

from swiftkit.core.errors import SwiftkitError

HF_LOGIN = "log in with `hf auth login` (`huggingface-cli login` on huggingface_hub < 1.0) or set HF_TOKEN"
MS_LOGIN = "log in with `modelscope login --token TOKEN` or set MODELSCOPE_API_TOKEN"
HF_DEFAULT = "https://huggingface.co"
MS_DEFAULT = "https://modelscope.cn"
# What the resumable ModelScope uploader leaves in the uploaded folder; not part of the artifact.
_MS_UPLOAD_LEFTOVERS = (".ms_upload_cache", ".ms_upload_progress")
_NETWORK_MODULES = ("httpx", "httpcore", "requests", "urllib3")  # prefixes: huggingface_hub 2.x uses httpx2


class HubPushError(SwiftkitError):
    """The upload to a model hub failed; the message names the hub, repository, HTTP status and login hint."""


def push_folder(folder: Path, config) -> str:
    """Upload every file of ``folder`` to ``config.hub.hub_model_id``; returns the repository's URL.

    ``config.model.use_hf`` picks the Hugging Face hub (huggingface_hub's ``HfApi``), otherwise ModelScope
    (modelscope's ``HubApi``). Raises :class:`HubPushError` (one line) when the push fails.
    """
    hub = config.hub
    repo_id = hub.hub_model_id
    use_hf = bool(getattr(config.model, "use_hf", False))
    if not repo_id:
        raise HubPushError("--push_to_hub needs --hub_model_id owner/name")
    folder = Path(folder)
    if not folder.is_dir() or not any(p.is_file() for p in folder.rglob("*")):
        raise HubPushError(f"--push_to_hub: {str(folder)!r} holds no files to upload")
    if use_hf:
        return _push_hf(folder, hub)
    return _push_modelscope(folder, hub)


# -- Hugging Face ------------------------------------------------------------------------------------


def _push_hf(folder: Path, hub) -> str:
    from huggingface_hub import HfApi, get_token  # defers huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError  # defers huggingface_hub

    repo_id = hub.hub_model_id
    api = HfApi(endpoint=hub.hub_endpoint) if hub.hub_endpoint else HfApi()
    where = f"Hugging Face hub ({api.endpoint})"
    if get_token() is None:
        raise HubPushError(f"--push_to_hub: no Hugging Face token to create or write {repo_id} on the {where}: "
                           f"{HF_LOGIN}")
    step = "creating"
    try:
        url = api.create_repo(repo_id, repo_type="model", private=hub.hub_private_repo, exist_ok=True)
        step = "uploading to"
        api.upload_folder(repo_id=repo_id, repo_type="model", folder_path=str(folder),
                          commit_message=hub.commit_message)
    except HfHubHTTPError as exc:
        response = getattr(exc, "response", None)
        raise HubPushError(_refusal(where, step, repo_id, response, _hf_reason(exc, response), HF_LOGIN)) from exc
    except ValueError as exc:  # huggingface_hub's word for README.md metadata the hub refuses
        raise HubPushError(f"--push_to_hub: {step} {repo_id} on the {where} failed: {' '.join(str(exc).split())}"
                           ) from exc
    except Exception as exc:
        if _is_network_error(exc):
            raise HubPushError(_unreachable(where, step, repo_id, exc, HF_LOGIN)) from exc
        raise
    return str(url) if url else f"{api.endpoint.rstrip('/')}/{repo_id}"


def _hf_reason(exc, response) -> str:
    """The server's own explanation of an HfHubHTTPError: X-Error-Message or the JSON error, else the text."""
    message = getattr(exc, "server_message", None)
    if not message and response is not None:
        message = response.headers.get("X-Error-Message")
    return message or ""


# -- ModelScope --------------------------------------------------------------------------------------


def _push_modelscope(folder: Path, hub) -> str:
    from modelscope.hub.api import HubApi  # defers modelscope

    repo_id = hub.hub_model_id
    api = HubApi(endpoint=hub.hub_endpoint) if hub.hub_endpoint else HubApi()
    endpoint = str(getattr(api, "endpoint", None) or hub.hub_endpoint or MS_DEFAULT).rstrip("/")
    where = f"ModelScope hub ({endpoint})"
    before = {name for name in _MS_UPLOAD_LEFTOVERS if (folder / name).exists()}
    logged = _LoggedHttpErrors()
    sdk_logger = logging.getLogger("modelscope_hub")
    sdk_logger.addHandler(logged)
    step = "creating"
    try:
        # The uploader prints its report on stdout, which belongs to the command's own result.
        with contextlib.redirect_stdout(sys.stderr):
            api.create_repo(repo_id, visibility="private" if hub.hub_private_repo else "public", exist_ok=True,
                            create_default_config=False)
            step = "uploading to"
            api.upload_folder(repo_id=repo_id, folder_path=str(folder), commit_message=hub.commit_message)
    except Exception as exc:
        if getattr(exc, "status_code", None) is None and logged.errors:
            exc = logged.errors[0]  # the summary error of a failed upload; the HTTP refusal was logged per file
        response = getattr(exc, "response", None)
        status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
        if status is not None:
            reason = getattr(exc, "message", None) or str(exc)
            raise HubPushError(_refusal(where, step, repo_id, response, reason, MS_LOGIN, status=status)) from exc
        if _is_network_error(exc):
            raise HubPushError(_unreachable(where, step, repo_id, exc, MS_LOGIN)) from exc
        if type(exc).__module__.split(".")[0] in ("modelscope", "modelscope_hub") or isinstance(exc, ValueError):
            raise HubPushError(f"--push_to_hub: {step} {repo_id} on the {where} failed: {_first_line(exc)}; "
                               f"{MS_LOGIN}") from exc
        raise
    finally:
        sdk_logger.removeHandler(logged)
        for name in _MS_UPLOAD_LEFTOVERS:
            leftover = folder / name
            if name not in before and leftover.is_file():
                leftover.unlink()
    return f"{endpoint}/models/{repo_id}"


class _LoggedHttpErrors(logging.Handler):
    """The HTTP errors the ModelScope uploader logs for each failed file: the error it raises at the end only
    counts the failures, so the status and the server's reason are taken from here."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors += [a for a in args if isinstance(a, BaseException) and getattr(a, "status_code", None)]


# -- messages ----------------------------------------------------------------------------------------


def _refusal(where: str, step: str, repo_id: str, response, reason: str, login: str, *, status=None) -> str:
    """One line for an HTTP refusal: hub, step, repository, status and reason, what to do."""
    status = status if status is not None else getattr(response, "status_code", None)
    phrase = getattr(response, "reason_phrase", None) or getattr(response, "reason", None) or ""
    head = f"HTTP {status}" + (f" {phrase}" if phrase else "")
    said = _first_line(reason)
    said = f" ({said})" if said and said not in head else ""
    owner = repo_id.split("/")[0]
    hint = {
        401: "the token is missing or not valid; ",
        403: f"the token may not write to {owner!r}: use a token with write access to that namespace; ",
        404: f"the namespace {owner!r} or the repository was not found: check --hub_model_id, or ",
    }.get(status, "")
    return f"--push_to_hub: {step} {repo_id} on the {where} failed: {head}{said}; {hint}{login}"


def _unreachable(where: str, step: str, repo_id: str, exc: BaseException, login: str) -> str:
    return (f"--push_to_hub: {step} {repo_id} on the {where} failed: the hub cannot be reached "
            f"({type(exc).__name__}: {_first_line(exc)}); check the network or --hub_endpoint and retry; {login}")


def _first_line(value) -> str:
    lines = str(value).strip().splitlines()
    text = lines[0] if lines else ""
    return text if len(text) <= 300 else text[:297] + "..."


def _is_network_error(exc: BaseException) -> bool:
    """A connection, DNS or timeout failure, whichever HTTP library the client uses."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__module__.startswith(_NETWORK_MODULES) for cls in type(exc).__mro__)
