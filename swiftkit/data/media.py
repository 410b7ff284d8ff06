"""Images in dataset rows: the canonical form, the checks conversion makes, and opening the images.

A canonical row with images is ``{"messages": [...], "images": [ref, ...], ...}``: each image sits in a
message's (string) content as the tag ``<image>`` (:data:`IMAGE_TAG`), and ``images`` holds one ref per
tag, in the order the tags come in the conversation. A ref is a string: an absolute local path, an
``http(s)://`` URL or a data URL ``data:image/<format>;base64,...``. A row without images has no
``images`` key, and an ``<image>`` in its text is plain text.

What the data may give (:func:`swiftkit.data.convert.to_messages_row` makes the canonical row of it):

* a top-level ``images`` column (ms-swift), in any row format: a list, or a single value, of local
  paths, URLs, data URLs, raw base64 strings (made data URLs; the format is read from the decoded
  bytes' first bytes) or objects ``{"path": ...}``, ``{"bytes": base64}`` (or raw bytes, as parquet
  files hold them) or ``{"url": ...}``, with one ``<image>`` tag per image in the messages. A relative
  path is resolved against the folder of the dataset file the row was read from
  (:func:`swiftkit.data.readers.source_folder`; a row not read from a file: the working directory);
  a ``file://`` URL becomes its path;
* OpenAI content parts in a message: ``content`` a list of ``{"type": "text", "text": ...}``,
  ``{"type": "image_url", "image_url": {"url": ...}}`` (or ``"image_url": "..."``) and
  ``{"type": "image", "image": ref}``, flattened to a string with ``<image>`` where each image part
  was (:func:`parts_to_tags`).

Refused, as a :class:`~swiftkit.data.errors.RowError` naming the row and a ``kind`` that lint counts:
videos and audio, as columns or parts (``unsupported_media``); a tag in an assistant message
(``image_in_reply``); a number of tags other than the number of images (``image_count``); a ref that
is neither a string nor such an object (``wrong_type``); a ref of no usable form, or images given both
as a column and as parts (``image_ref``).

Conversion never opens an image: training loads each one when it encodes the row (:func:`load_image`),
and ``swiftkit data lint`` opens them all (:func:`check_images`).
"""

from __future__ import annotations

import base64
import binascii
import http.client
import io
import os
import re
import urllib.error
import urllib.parse
import urllib.request

from swiftkit.data.errors import DatasetError, RowError

IMAGE_TAG = "<image>"
DOWNLOAD_TIMEOUT_S = 30
# Where conversion keeps the images of a message's content parts until the row's images are gathered.
PART_IMAGES = "_images"
OTHER_MEDIA = ("videos", "audios")  # columns refused for now
_OTHER_PARTS = {"video": "videos", "video_url": "videos", "audio": "audios", "audio_url": "audios",
                "input_audio": "audios"}
_IN_REPLY = "images in assistant replies are not supported: put them in user turns"
_FORMATS = "png, jpeg, gif, webp, bmp, tiff, avif"
_DATA_URL = re.compile(r"data:image/[\w.+-]+(;[\w.+=-]+)*;base64,", re.IGNORECASE)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_SHOWN = 40  # characters of a data URL or base64 string shown in messages


def unsupported(key: str) -> str:
    """The one-line refusal of a kind of media other than images (``videos`` / ``audios``)."""
    return f"{key} are not supported yet: swiftkit trains on images and text"


def count_image_tags(messages: list[dict]) -> int:
    """How many ``<image>`` tags the string contents of ``messages`` hold."""
    return sum(m["content"].count(IMAGE_TAG) for m in messages
               if isinstance(m, dict) and isinstance(m.get("content"), str))


def _short(ref) -> str:
    text = ref if isinstance(ref, str) else repr(ref)
    return text[:_SHOWN] + "..." if text[:5].lower() == "data:" or len(text) > 200 else text


def _format(data: bytes) -> str | None:
    """The image format that ``data`` starts like, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM" and data[6:10] == b"\0\0\0\0":
        return "bmp"
    if data[:4] in (b"II*\0", b"MM\0*"):
        return "tiff"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "avif"
    return None


def _base64_image(text: str) -> str | None:
    """``text`` as a data URL when it is base64 of an image of a known format (only its start is
    decoded), else None."""
    text = text.strip()
    head = text[:64]
    if len(text) < 16 or not _BASE64.fullmatch(head):
        return None
    try:
        fmt = _format(base64.b64decode(head[: len(head) // 4 * 4], validate=True))
    except (binascii.Error, ValueError):
        return None
    return None if fmt is None else f"data:image/{fmt};base64,{''.join(text.split())}"


def _file_url_path(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"a file URL on another host ({parsed.netloc}) cannot be opened")
    return urllib.request.url2pathname(parsed.path)


def _ref(value, where: str, label: str, folder: str | None) -> str:
    """One image as the data gives it -> its canonical ref; ``label`` names it in errors (``images[1]``)."""
    if isinstance(value, dict):
        return _object_ref(value, where, label, folder)
    if not isinstance(value, str):
        raise RowError(where, f"{label} must be a path, URL or base64 string, or an object with 'path', 'bytes' or "
                       f"'url'; got {type(value).__name__}", "wrong_type")
    text = value.strip()
    if not text:
        raise RowError(where, f"{label} is an empty string", "image_ref")
    if text[:5].lower() == "data:":
        if not _DATA_URL.match(text):
            raise RowError(where, f"{label}: a data URL must be data:image/<format>;base64,<data>, got "
                           f"{_short(text)!r}", "image_ref")
        return text
    scheme = _SCHEME.match(text)
    if scheme is not None:
        name = scheme.group(1).lower()
        if name in ("http", "https"):
            return text
        if name == "file":
            try:
                return _file_url_path(text)
            except ValueError as exc:
                raise RowError(where, f"{label}: {exc}", "image_ref") from exc
        raise RowError(where, f"{label}: unsupported URL scheme {name!r} ({_short(text)!r}); give a local path, an "
                       "http(s) URL, a data URL or base64", "image_ref")
    data_url = _base64_image(text)
    if data_url is not None:
        return data_url
    path = os.path.expanduser(text)
    return path if os.path.isabs(path) else os.path.join(folder or os.getcwd(), path)


def _object_ref(value: dict, where: str, label: str, folder: str | None) -> str:
    """``{"bytes": ...}`` (base64, a data URL, or raw bytes), ``{"path": ...}`` or ``{"url": ...}``."""
    data = value.get("bytes")
    if isinstance(data, (bytes, bytearray)):
        fmt = _format(bytes(data[:16]))
        if fmt is None:
            raise RowError(where, f"{label}.bytes are not an image of a known format ({_FORMATS})", "image_ref")
        return f"data:image/{fmt};base64,{base64.b64encode(data).decode('ascii')}"
    if isinstance(data, str):
        if data.strip()[:5].lower() == "data:":
            return _ref(data, where, f"{label}.bytes", folder)
        data_url = _base64_image(data)
        if data_url is None:
            raise RowError(where, f"{label}.bytes must be base64 of an image ({_FORMATS}), got {_short(data)!r}",
                           "image_ref")
        return data_url
    if data is not None:
        raise RowError(where, f"{label}.bytes must be a base64 string, got {type(data).__name__}", "wrong_type")
    for key in ("path", "url"):
        if value.get(key) is not None:
            return _ref(value[key], where, f"{label}.{key}", folder)
    raise RowError(where, f"{label}: an image object needs 'path', 'bytes' or 'url' (found keys {sorted(value)})",
                   "image_ref")


def column_images(value, where: str, folder: str | None = None) -> list[str]:
    """The canonical refs of an ``images`` column's value: a list, or a single image; None, ``""`` and
    ``[]`` are no image. ``folder`` is what relative paths resolve against (None: the working directory)."""
    if value is None or value == "" or value == []:
        return []
    if not isinstance(value, list):
        return [_ref(value, where, "images", folder)]
    return [_ref(item, where, f"images[{i}]", folder) for i, item in enumerate(value)]


def is_content_parts(content) -> bool:
    """Whether a message's ``content`` is a list of content parts (objects), not a string."""
    return isinstance(content, list) and bool(content) and all(isinstance(part, dict) for part in content)


def flatten_parts(parts: list[dict], where: str, label: str, folder: str | None = None) -> tuple[str, list[str]]:
    """One message's content parts -> ``(its text with <image> where each image part was, the images'
    canonical refs)``; ``label`` names the message in errors (``messages[2]``)."""
    texts, refs = [], []
    for k, part in enumerate(parts):
        at = f"{label}.content[{k}]"
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise RowError(where, f"{at}: 'text' must be a string, got {type(text).__name__}", "wrong_type")
            texts.append(text)
        elif kind in ("image_url", "image"):
            value = part.get(kind)
            if kind == "image_url" and isinstance(value, dict):
                value = value.get("url")
            if value is None:
                needs = "'image_url': {'url': ...}" if kind == "image_url" else "'image'"
                raise RowError(where, f"{at}: an {kind} part needs {needs} (found keys {sorted(part)})",
                               "missing_field")
            refs.append(_ref(value, where, f"{at}.{kind}", folder))
            texts.append(IMAGE_TAG)
        elif kind in _OTHER_PARTS:
            raise RowError(where, unsupported(_OTHER_PARTS[kind]), "unsupported_media")
        else:
            raise RowError(where, f"{at}: unknown content part type {kind!r}; expected 'text', 'image_url' or "
                           "'image'", "wrong_type")
    return "".join(texts), refs


def parts_to_tags(messages: list, where: str, folder: str | None = None) -> tuple[list, list[str]]:
    """``messages`` with each content-parts ``content`` flattened to a string (``<image>`` where each
    image part was), and the images' canonical refs in order (relative paths resolved against
    ``folder``, by default the working directory). Messages with string contents are kept as they are.
    A bad part is a :class:`~swiftkit.data.errors.RowError` (a ``DatasetError``) naming ``where``."""
    out, images = [], []
    for i, msg in enumerate(messages):
        if isinstance(msg, dict) and is_content_parts(msg.get("content")):
            content, refs = flatten_parts(msg["content"], where, f"messages[{i}]", folder)
            msg = {**msg, "content": content}
            images += refs
        out.append(msg)
    return out, images


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def gather_images(messages: list[dict], column: list[str], where: str,
                  rejected: str | None = None) -> tuple[list[dict], list[str]]:
    """The messages and images of a converted row: the images its content parts gave (kept on each
    message under :data:`PART_IMAGES`, taken off here) or those of its ``images`` column (``column``,
    canonical refs), checked against the ``<image>`` tags of the messages (and of ``rejected``, the
    rejected reply of a preference pair). No images: the messages as they are, and ``[]``."""
    parts: list[str] = []
    if any(PART_IMAGES in m for m in messages):
        for m in messages:
            parts += m.get(PART_IMAGES, ())
        messages = [{k: v for k, v in m.items() if k != PART_IMAGES} for m in messages]
    if parts and column:
        raise RowError(where, "the row gives images both in 'images' and as content parts; give them one way",
                       "image_ref")
    images = parts or column
    if not images:
        return messages, []
    for i, msg in enumerate(messages):
        if msg["role"] == "assistant" and IMAGE_TAG in msg["content"]:
            raise RowError(where, f"messages[{i}]: {_IN_REPLY}", "image_in_reply")
    if rejected is not None and IMAGE_TAG in rejected:
        raise RowError(where, f"'rejected_response': {_IN_REPLY}", "image_in_reply")
    tags = count_image_tags(messages)
    if tags != len(images):
        hint = f": put an {IMAGE_TAG} tag in a user turn where each image goes" if tags == 0 else ""
        raise RowError(where, f"{_plural(tags, IMAGE_TAG + ' tag')} in the messages but "
                       f"{_plural(len(images), 'image')}{hint}", "image_count")
    return messages, images


# --- opening images ------------------------------------------------------------------------------

class _Unusable(Exception):
    """Why an image cannot be used (the text after ``image 'ref': ``)."""


def _b64decode(data: str) -> bytes:
    data = "".join(data.split())
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Unusable(f"invalid base64 ({exc})") from exc


def _download(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "swiftkit"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise _Unusable(f"cannot download it: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise _Unusable(f"cannot download it: no answer within {DOWNLOAD_TIMEOUT_S} s") from exc
        raise _Unusable(f"cannot download it: {exc.reason}") from exc
    except TimeoutError as exc:
        raise _Unusable(f"cannot download it: no answer within {DOWNLOAD_TIMEOUT_S} s") from exc
    except (OSError, ValueError, http.client.HTTPException) as exc:
        raise _Unusable(f"cannot download it: {exc}") from exc


def _source(ref: str) -> bytes | str:
    """The bytes of ``ref``, or the local path to open."""
    text = ref.strip()
    if text[:5].lower() == "data:":
        head, comma, data = text.partition(",")
        if not comma or not head.lower().endswith(";base64"):
            raise _Unusable("a data URL must be data:image/<format>;base64,<data>")
        return _b64decode(data)
    scheme = _SCHEME.match(text)
    if scheme is not None:
        name = scheme.group(1).lower()
        if name in ("http", "https"):
            return _download(text)
        if name != "file":
            raise _Unusable(f"unsupported URL scheme {name!r}")
        try:
            return _file_url_path(text)
        except ValueError as exc:
            raise _Unusable(str(exc)) from exc
    data_url = _base64_image(text)
    if data_url is not None:
        return _b64decode(data_url.partition(",")[2])
    return os.path.expanduser(text)


def _open(ref):
    """``ref`` opened, fully loaded, as an RGB image; :class:`_Unusable` saying why not."""
    from PIL import Image, UnidentifiedImageError  # defers PIL

    if not isinstance(ref, str):
        raise _Unusable(f"a ref must be a string, got {type(ref).__name__}")
    if not ref.strip():
        raise _Unusable("empty ref")
    source = _source(ref)
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
            image.load()
            return image.convert("RGB")
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise _Unusable("no such file") from exc
    except IsADirectoryError as exc:
        raise _Unusable("is a folder, not an image file") from exc
    except PermissionError as exc:
        raise _Unusable("cannot read it: permission denied") from exc
    except UnidentifiedImageError as exc:
        raise _Unusable("cannot be read as an image: not an image format Pillow knows") from exc
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, ValueError, ... for broken data
        raise _Unusable(f"cannot be read as an image: {exc or type(exc).__name__}") from exc


def load_image(ref: str, where: str = ""):
    """The image ``ref`` (a local path, ``file://`` / ``http(s)://`` URL, data URL or raw base64) as a
    fully loaded RGB ``PIL.Image.Image``. URLs are fetched with a 30 s timeout. Any failure is a
    :class:`DatasetError` ``"{where}: image {ref!r}: {problem}"`` (data URLs shortened)."""
    try:
        return _open(ref)
    except _Unusable as exc:
        prefix = f"{where}: " if where else ""
        raise DatasetError(f"{prefix}image {_short(ref)!r}: {exc}") from exc.__cause__


def check_images(row: dict, checked: dict | None = None) -> list[str]:
    """Open every image of a canonical row; one line per image that cannot be used, e.g.
    ``image 2 '/data/x.png': no such file`` (numbered from 1). ``checked`` (ref -> problem or None),
    shared between calls, opens each distinct ref once."""
    problems = []
    for i, ref in enumerate(row.get("images") or (), 1):
        if checked is not None and isinstance(ref, str) and ref in checked:
            problem = checked[ref]
        else:
            try:
                _open(ref)
                problem = None
            except _Unusable as exc:
                problem = str(exc)
            if checked is not None and isinstance(ref, str):
                checked[ref] = problem
        if problem is not None:
            problems.append(f"image {i} {_short(ref)!r}: {problem}")
    return problems
