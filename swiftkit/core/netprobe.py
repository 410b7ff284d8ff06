"""Fast reachability check of a model or dataset hub before its library is asked to download.

The hub libraries retry an unreachable host for a long time (ModelScope's back-off took 23 s with
DNS failing at once, longer when packets are dropped). A short TCP connect to the host that a
request would open first (the configured proxy's, when one applies) says within seconds whether
trying is worth it. Standard library only: the CLI imports this before any hub library.
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from urllib.parse import urlsplit

PROBE_TIMEOUT_S = 5.0


def connect_address(url: str) -> tuple[str, int]:
    """The host and port a request to ``url`` connects to first (the proxy's, when one is set)."""
    parsed = urlsplit(url)
    host = parsed.hostname or url
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        p = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or host, p.port or 80
    return host, port


def unreachable_reason(endpoints: list[str], timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when any endpoint accepts a TCP connection within ``timeout``; else why not, in one line.

    Each probe runs in a daemon thread: a DNS lookup (which has no timeout of its own) that hangs
    cannot hold the caller.
    """
    addresses = [connect_address(url) for url in endpoints]
    errors: dict[tuple[str, int], str] = {}
    ok = threading.Event()
    done = threading.Semaphore(0)

    def probe(addr):
        try:
            socket.create_connection(addr, timeout=timeout).close()
            ok.set()
        except OSError as exc:
            errors[addr] = " ".join(str(exc).split()) or type(exc).__name__
        finally:
            done.release()

    for addr in addresses:
        threading.Thread(target=probe, args=(addr,), daemon=True).start()
    for _ in addresses:
        if ok.is_set() or not done.acquire(timeout=timeout + 0.5):
            break
    if ok.is_set():
        return None
    parts = [
        f"{h}:{p}: {errors.get((h, p), f'no answer within {timeout:g} s')}" for h, p in addresses
    ]
    return "cannot connect (" + "; ".join(parts) + ")"


def modelscope_endpoints() -> list[str]:
    """The endpoints a ModelScope download uses: the configured one and, with the default, the
    international site the library falls back to."""
    try:
        from modelscope_hub.config import get_default_config  # defers modelscope_hub
        from modelscope_hub.constants import DEFAULT_ENDPOINT, DEFAULT_INTL_ENDPOINT  # defers modelscope_hub
    except ImportError:  # modelscope releases before the modelscope_hub split
        from modelscope.hub.utils.utils import get_endpoint  # defers modelscope

        return [get_endpoint()]
    endpoint = get_default_config().endpoint
    return [endpoint, DEFAULT_INTL_ENDPOINT] if endpoint == DEFAULT_ENDPOINT else [endpoint]
