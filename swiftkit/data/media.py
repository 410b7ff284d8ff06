"""Images, videos and audio in dataset rows: the canonical form, the checks conversion makes, and opening them.

A canonical row with images is ``{"messages": [...], "images": [ref, ...], ...}``: each image sits in a
message's (string) content as the tag ``<image>`` (:data:`IMAGE_TAG`), and ``images`` holds one ref per
tag, in the order the tags come in the conversation. A ref is a string: an absolute local path, an
``http(s)://`` URL or a data URL ``data:image/<format>;base64,...``. A row without images has no
``images`` key, and an ``<image>`` in its text is plain text. Videos are the same with ``<video>``
(:data:`VIDEO_TAG`) and ``videos``: a video's ref is a video file's absolute path or ``http(s)://`` URL, or a
list of image refs (its frames); and audio with ``<audio>`` (:data:`AUDIO_TAG`) and ``audios``: an audio file's
absolute path, ``http(s)://`` URL or a data URL ``data:audio/<format>;base64,...``.

What the data may give (:func:`swiftkit.data.convert.to_messages_row` makes the canonical row of it):

* a top-level ``images`` column (ms-swift), in any row format: a list, or a single value, of local
  paths, URLs, data URLs, raw base64 strings (made data URLs; the format is read from the decoded
  bytes' first bytes) or objects ``{"path": ...}``, ``{"bytes": base64}`` (or raw bytes, as parquet
  files hold them) or ``{"url": ...}``, with one ``<image>`` tag per image in the messages. A relative
  path is resolved against the folder of the dataset file the row was read from
  (:func:`swiftkit.data.readers.source_folder`; a row not read from a file: the working directory);
  a ``file://`` URL becomes its path;
* a ``videos`` column: a list, or a single video file; each video a file's path or URL (or ``{"path": ...}`` /
  ``{"url": ...}``), or its frames (a list of images, or ``{"frames": [...]}``);
* an ``audios`` column: a list, or a single clip; each a file's path or URL, a data URL, ``{"path": ...}``,
  ``{"url": ...}`` or ``{"data": base64, "format": "wav"}``;
* OpenAI content parts in a message: ``content`` a list of ``{"type": "text", "text": ...}``,
  ``{"type": "image_url", "image_url": {"url": ...}}`` (or ``"image_url": "..."``),
  ``{"type": "image", "image": ref}``, ``{"type": "video_url", "video_url": {"url": ...}}``,
  ``{"type": "video", "video": file or frames}``, ``{"type": "audio_url", "audio_url": {"url": ...}}``,
  ``{"type": "audio", "audio": ref}`` and ``{"type": "input_audio", "input_audio": {"data": ..., "format": ...}}``,
  flattened to a string with ``<image>`` / ``<video>`` / ``<audio>`` where each part was (:func:`parts_to_tags`).

Refused, as a :class:`~swiftkit.data.errors.RowError` naming the row and a ``kind`` that lint counts (for each
kind of media: ``image_*``, ``video_*``, ``audio_*``): a tag in an assistant message (``image_in_reply``); a
number of tags other than the number of images (``image_count``); a ref that is neither a string nor such an
object (``wrong_type``); a ref of no usable form, or images given both as a column and as parts (``image_ref``).

Conversion never opens a file: training loads each one when it encodes the row (:func:`load_image`,
:func:`load_video`, :func:`load_audio`), and ``swiftkit data lint`` opens them all (:func:`check_images`).
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
VIDEO_TAG = "<video>"
AUDIO_TAG = "<audio>"
DOWNLOAD_TIMEOUT_S = 30
# A video file is decoded into at most this many frames, taken evenly over the whole video (a video given as a
# list of frames is used as it is).
MAX_VIDEO_FRAMES = 32
# Each kind of media: its tag in the messages and the canonical row's key (also the data's column).
MEDIA_KINDS = {"image": (IMAGE_TAG, "images"), "video": (VIDEO_TAG, "videos"), "audio": (AUDIO_TAG, "audios")}
_ARTICLE = {"image": "an", "video": "a", "audio": "an"}
_AUDIO_FORMATS = {"wav", "mp3", "flac", "ogg", "m4a", "aac", "opus", "webm"}
_FORMATS = "png, jpeg, gif, webp, bmp, tiff, avif"
_DATA_URL = re.compile(r"data:image/[\w.+-]+(;[\w.+=-]+)*;base64,", re.IGNORECASE)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_SHOWN = 40  # characters of a data URL or base64 string shown in messages


def part_key(kind: str) -> str:
    """Where conversion keeps a message's ``kind`` content parts until the row's media are gathered."""
    return f"_{kind}s"


def has_media(row) -> bool:
    """Whether a canonical row holds images, videos or audio (it is then encoded with the model's processor)."""
    return isinstance(row, dict) and any(row.get(key) for _, key in MEDIA_KINDS.values())


def count_image_tags(messages: list[dict], tag: str = IMAGE_TAG) -> int:
    """How many ``<image>`` tags (or ``tag``, e.g. ``<video>``) the string contents of ``messages`` hold."""
    return sum(m["content"].count(tag) for m in messages
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


def _video_ref(value, where: str, label: str, folder: str | None):
    """One video as the data gives it -> its canonical ref: a list of frame refs (the video given as its frames:
    a list, or ``{"frames": [...]}``, each frame an image as :func:`_ref` takes it), or the path or http(s) URL of
    a video file (a string, or ``{"path": ...}`` / ``{"url": ...}``)."""
    if isinstance(value, dict) and value.get("frames") is not None:
        value = value["frames"]
        label = f"{label}.frames"
    if isinstance(value, list):
        if not value:
            raise RowError(where, f"{label}: a video given as frames needs at least one frame", "video_ref")
        return [_ref(frame, where, f"{label}[{k}]", folder) for k, frame in enumerate(value)]
    if isinstance(value, dict):
        for key in ("path", "url"):
            if value.get(key) is not None:
                return _video_ref(value[key], where, f"{label}.{key}", folder)
        raise RowError(where, f"{label}: a video object needs 'frames', 'path' or 'url' (found keys {sorted(value)})",
                       "video_ref")
    if not isinstance(value, str):
        raise RowError(where, f"{label} must be a video file's path or URL, or a list of frames; got "
                       f"{type(value).__name__}", "wrong_type")
    text = value.strip()
    if not text:
        raise RowError(where, f"{label} is an empty string", "video_ref")
    if text[:5].lower() == "data:":
        raise RowError(where, f"{label}: a video is a file's local path or http(s) URL, or a list of frame images; "
                       f"got {_short(text)!r}", "video_ref")
    return _file_or_url(text, where, label, folder, "video")


def _column(value, where: str, folder: str | None, key: str, converter) -> list:
    """The canonical refs of a media column's value (``key``: ``images``, ...): a list, or a single one; None, ``""``
    and ``[]`` are none. ``converter`` makes each canonical, ``folder`` is what relative paths resolve against."""
    if value is None or value == "" or value == []:
        return []
    if not isinstance(value, list):
        return [converter(value, where, key, folder)]
    return [converter(item, where, f"{key}[{i}]", folder) for i, item in enumerate(value)]


def column_videos(value, where: str, folder: str | None = None) -> list:
    """The canonical refs of a ``videos`` column's value: a list of videos (each a file's path or URL, or a list of
    frames), or a single video file; None, ``""`` and ``[]`` are no video."""
    return _column(value, where, folder, "videos", _video_ref)


def _audio_ref(value, where: str, label: str, folder: str | None) -> str:
    """One audio clip as the data gives it -> its canonical ref: an audio file's local path or http(s) URL, or a
    data URL ``data:audio/<format>;base64,...`` (also made from OpenAI's ``{"data": base64, "format": "wav"}``);
    ``{"path": ...}`` / ``{"url": ...}`` too."""
    if isinstance(value, dict):
        if value.get("data") is not None:
            data, fmt = value["data"], str(value.get("format") or "wav").lower()
            if not isinstance(data, str) or fmt not in _AUDIO_FORMATS:
                raise RowError(where, f"{label}: audio data must be a base64 string with a 'format' of "
                               f"{', '.join(sorted(_AUDIO_FORMATS))}", "audio_ref")
            return f"data:audio/{fmt};base64,{''.join(data.split())}"
        for key in ("path", "url"):
            if value.get(key) is not None:
                return _audio_ref(value[key], where, f"{label}.{key}", folder)
        raise RowError(where, f"{label}: an audio object needs 'path', 'url' or 'data' (found keys {sorted(value)})",
                       "audio_ref")
    if not isinstance(value, str):
        raise RowError(where, f"{label} must be an audio file's path or URL, or a data URL; got "
                       f"{type(value).__name__}", "wrong_type")
    text = value.strip()
    if not text:
        raise RowError(where, f"{label} is an empty string", "audio_ref")
    if text[:5].lower() == "data:":
        if not re.match(r"data:audio/[\w.+-]+(;[\w.+=-]+)*;base64,", text, re.IGNORECASE):
            raise RowError(where, f"{label}: a data URL must be data:audio/<format>;base64,<data>, got "
                           f"{_short(text)!r}", "audio_ref")
        return text
    return _file_or_url(text, where, label, folder, "audio")


def _file_or_url(text: str, where: str, label: str, folder: str | None, kind: str) -> str:
    """A media file's canonical ref: an http(s) URL as it is, a ``file://`` URL or a path made absolute."""
    scheme = _SCHEME.match(text)
    if scheme is not None:
        name = scheme.group(1).lower()
        if name in ("http", "https"):
            return text
        if name != "file":
            raise RowError(where, f"{label}: unsupported URL scheme {name!r} ({_short(text)!r}); give a local path or "
                           "an http(s) URL", f"{kind}_ref")
        try:
            return _file_url_path(text)
        except ValueError as exc:
            raise RowError(where, f"{label}: {exc}", f"{kind}_ref") from exc
    path = os.path.expanduser(text)
    return path if os.path.isabs(path) else os.path.join(folder or os.getcwd(), path)


def column_audios(value, where: str, folder: str | None = None) -> list[str]:
    """The canonical refs of an ``audios`` column's value: a list, or a single clip; None, ``""`` and ``[]`` are
    no audio."""
    return _column(value, where, folder, "audios", _audio_ref)


def column_images(value, where: str, folder: str | None = None) -> list[str]:
    """The canonical refs of an ``images`` column's value: a list, or a single image; None, ``""`` and
    ``[]`` are no image. ``folder`` is what relative paths resolve against (None: the working directory)."""
    return _column(value, where, folder, "images", _ref)


def is_content_parts(content) -> bool:
    """Whether a message's ``content`` is a list of content parts (objects), not a string."""
    return isinstance(content, list) and bool(content) and all(isinstance(part, dict) for part in content)


# content part type -> (the kind of media, where the part holds its value, how the value becomes a canonical ref)
_PARTS = {
    "image": ("image", "image", _ref),
    "image_url": ("image", "image_url", _ref),
    "video": ("video", "video", _video_ref),
    "video_url": ("video", "video_url", _video_ref),
    "audio": ("audio", "audio", _audio_ref),
    "audio_url": ("audio", "audio_url", _audio_ref),
    "input_audio": ("audio", "input_audio", _audio_ref),
}


def flatten_parts(parts: list[dict], where: str, label: str, folder: str | None = None) -> tuple[str, dict]:
    """One message's content parts -> ``(its text with <image> / <video> / <audio> where each such part was, the
    canonical refs by row key: {"images": [...], "videos": [...], "audios": [...]})``; ``label`` names the message
    in errors (``messages[2]``). Parts: ``text``; ``image_url`` (``{"url": ...}`` or a string) and ``image``;
    ``video_url`` and ``video`` (a file or a list of frames); ``audio_url``, ``audio`` and OpenAI's
    ``input_audio`` (``{"data": base64, "format": "wav"}``)."""
    texts: list[str] = []
    media: dict[str, list] = {key: [] for _, key in MEDIA_KINDS.values()}
    for k, part in enumerate(parts):
        at = f"{label}.content[{k}]"
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise RowError(where, f"{at}: 'text' must be a string, got {type(text).__name__}", "wrong_type")
            texts.append(text)
            continue
        if kind not in _PARTS:
            raise RowError(where, f"{at}: unknown content part type {kind!r}; expected 'text', "
                           f"{', '.join(repr(t) for t in _PARTS)}", "wrong_type")
        media_kind, field, converter = _PARTS[kind]
        value = part.get(field)
        if kind.endswith("_url") and isinstance(value, dict):
            value = value.get("url")
        if value is None:
            needs = f"'{field}': {{'url': ...}}" if kind.endswith("_url") else f"'{field}'"
            raise RowError(where, f"{at}: {_ARTICLE[media_kind]} {kind} part needs {needs} (found keys "
                           f"{sorted(part)})", "missing_field")
        tag, key = MEDIA_KINDS[media_kind]
        media[key].append(converter(value, where, f"{at}.{field}", folder))
        texts.append(tag)
    return "".join(texts), media


def parts_to_tags(messages: list, where: str, folder: str | None = None) -> tuple[list, dict]:
    """``messages`` with each content-parts ``content`` flattened to a string (``<image>`` / ``<video>`` /
    ``<audio>`` where each such part was), and the canonical refs in order by row key (``{"images": [...],
    "videos": [...], "audios": [...]}``; relative paths resolved against ``folder``, by default the working
    directory). Messages with string contents are kept as they are. A bad part is a
    :class:`~swiftkit.data.errors.RowError` (a ``DatasetError``) naming ``where``."""
    out: list = []
    media: dict[str, list] = {key: [] for _, key in MEDIA_KINDS.values()}
    for i, msg in enumerate(messages):
        if isinstance(msg, dict) and is_content_parts(msg.get("content")):
            content, refs = flatten_parts(msg["content"], where, f"messages[{i}]", folder)
            msg = {**msg, "content": content}
            for key, found in refs.items():
                media[key] += found
        out.append(msg)
    return out, media


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _gathered(messages: list[dict], column: list, where: str, rejected: str | None, kind: str) -> list:
    """The ``kind`` (``image`` / ``video`` / ``audio``) media of a converted row: those its content parts gave
    (kept on each message under :func:`part_key`) or those of its column, checked against the messages' tags."""
    tag, key = MEDIA_KINDS[kind]
    noun = "audio clip" if kind == "audio" else kind
    parts: list = []
    for m in messages:
        parts += m.get(part_key(kind), ())
    if parts and column:
        raise RowError(where, f"the row gives {key} both in '{key}' and as content parts; give them one way",
                       f"{kind}_ref")
    media = parts or column
    if not media:
        return []
    for i, msg in enumerate(messages):
        if msg["role"] == "assistant" and tag in msg["content"]:
            raise RowError(where, f"messages[{i}]: {key} in assistant replies are not supported: put them in user "
                           "turns", f"{kind}_in_reply")
    if rejected is not None and tag in rejected:
        raise RowError(where, f"'rejected_response': {key} in assistant replies are not supported: put them in "
                       "user turns", f"{kind}_in_reply")
    tags = count_image_tags(messages, tag)
    if tags != len(media):
        hint = f": put {_ARTICLE[kind]} {tag} tag in a user turn where each {noun} goes" if tags == 0 else ""
        raise RowError(where, f"{_plural(tags, tag + ' tag')} in the messages but "
                       f"{_plural(len(media), noun)}{hint}", f"{kind}_count")
    return media


def gather_media(messages: list[dict], columns: dict[str, list], where: str,
                 rejected: str | None = None) -> tuple[list[dict], dict[str, list]]:
    """The messages and media of a converted row: for each kind, the refs its content parts gave (kept on each
    message under :func:`part_key`, taken off here) or those of its column (``columns``: row key -> canonical
    refs), checked against the ``<image>`` / ``<video>`` / ``<audio>`` tags of the messages (and of ``rejected``,
    the rejected reply of a preference pair). Returns the messages and the kinds the row holds
    (``{"images": [...]}``; ``{}`` for a text row)."""
    media = {}
    for kind, (_, key) in MEDIA_KINDS.items():
        found = _gathered(messages, list(columns.get(key) or ()), where, rejected, kind)
        if found:
            media[key] = found
    keys = {part_key(kind) for kind in MEDIA_KINDS}
    if any(keys & m.keys() for m in messages):
        messages = [{k: v for k, v in m.items() if k not in keys} for m in messages]
    return messages, media


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


def _decode_video(ref: str) -> list:
    """The frames of the video file ``ref`` (a path or URL), decoded with PyAV: at most :data:`MAX_VIDEO_FRAMES`,
    taken evenly over the video, as RGB images; :class:`_Unusable` saying why not."""
    try:
        import av  # defers av (optional: the video extra)
    except ImportError as exc:
        raise _Unusable("video files are decoded with PyAV: install swiftkit[video] (or give the video as a list of "
                        "frame images)") from exc
    source = _source(ref)
    try:
        with av.open(io.BytesIO(source) if isinstance(source, bytes) else source) as container:
            if not container.streams.video:
                raise _Unusable("the file holds no video stream")
            frames = [frame.to_image().convert("RGB") for frame in container.decode(video=0)]
    except _Unusable:
        raise
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise _Unusable("no such file") from exc
    except IsADirectoryError as exc:
        raise _Unusable("is a folder, not a video file") from exc
    except Exception as exc:  # PyAV raises its own error classes (InvalidDataError, ...) for data it cannot decode
        raise _Unusable(f"cannot be read as a video: {exc or type(exc).__name__}") from exc
    if not frames:
        raise _Unusable("the video has no frames")
    if len(frames) > MAX_VIDEO_FRAMES:
        step = len(frames) / MAX_VIDEO_FRAMES
        frames = [frames[int(k * step)] for k in range(MAX_VIDEO_FRAMES)]
    return frames


def _open_video(ref) -> list:
    """The frames of a canonical video ref (a list of frame refs, or a video file's path or URL) as RGB images."""
    if isinstance(ref, list):
        frames = []
        for k, frame in enumerate(ref, 1):
            try:
                frames.append(_open(frame))
            except _Unusable as exc:
                raise _Unusable(f"frame {k} {_short(frame)!r}: {exc}") from exc.__cause__
        return frames
    if not isinstance(ref, str) or not ref.strip():
        raise _Unusable("a video must be a file's path or URL, or a list of frames")
    return _decode_video(ref)


def _short_video(ref) -> str:
    return f"{len(ref)} frames from {_short(ref[0])}" if isinstance(ref, list) and ref else _short(ref)


def load_video(ref, where: str = "") -> list:
    """The video ``ref`` (a list of frame refs, each as :func:`load_image` takes it, or the local path or http(s)
    URL of a video file, decoded with PyAV into at most :data:`MAX_VIDEO_FRAMES` frames) as a list of RGB
    ``PIL.Image.Image`` frames. Any failure is a :class:`DatasetError` ``"{where}: video {ref}: {problem}"``."""
    try:
        return _open_video(ref)
    except _Unusable as exc:
        prefix = f"{where}: " if where else ""
        raise DatasetError(f"{prefix}video {_short_video(ref)!r}: {exc}") from exc.__cause__


def _decode_audio(ref: str, sampling_rate: int = 16000):
    """The audio file or data URL ``ref`` decoded with PyAV, as one mono float32 numpy array at ``sampling_rate``
    samples per second; :class:`_Unusable` saying why not."""
    try:
        import av  # defers av (optional: the video extra)
    except ImportError as exc:
        raise _Unusable("audio is decoded with PyAV: install swiftkit[video]") from exc
    import numpy as np  # defers numpy

    source = _source(ref)
    chunks = []
    try:
        with av.open(io.BytesIO(source) if isinstance(source, bytes) else source) as container:
            if not container.streams.audio:
                raise _Unusable("the file holds no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sampling_rate)
            for frame in container.decode(audio=0):
                chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except _Unusable:
        raise
    except (FileNotFoundError, NotADirectoryError) as exc:
        raise _Unusable("no such file") from exc
    except IsADirectoryError as exc:
        raise _Unusable("is a folder, not an audio file") from exc
    except Exception as exc:  # PyAV raises its own error classes for data it cannot decode
        raise _Unusable(f"cannot be read as audio: {exc or type(exc).__name__}") from exc
    samples = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, dtype=np.float32)
    if not samples.size:
        raise _Unusable("the audio has no samples")
    return samples


def load_audio(ref: str, sampling_rate: int, where: str = ""):
    """The audio clip ``ref`` (a local path, ``file://`` / ``http(s)://`` URL or data URL of an audio file),
    decoded with PyAV into one mono float32 numpy array at ``sampling_rate``. Any failure is a
    :class:`DatasetError` ``"{where}: audio {ref!r}: {problem}"``."""
    try:
        if not isinstance(ref, str) or not ref.strip():
            raise _Unusable("an audio clip must be a file's path or URL, or a data URL")
        return _decode_audio(ref, sampling_rate)
    except _Unusable as exc:
        prefix = f"{where}: " if where else ""
        raise DatasetError(f"{prefix}audio {_short(ref)!r}: {exc}") from exc.__cause__


def _problem(opener, ref, checked: dict | None) -> str | None:
    key = ref if isinstance(ref, str) else repr(ref)
    if checked is not None and key in checked:
        return checked[key]
    try:
        opener(ref)
        problem = None
    except _Unusable as exc:
        problem = str(exc)
    if checked is not None:
        checked[key] = problem
    return problem


def check_images(row: dict, checked: dict | None = None) -> list[str]:
    """Open every image, video and audio clip of a canonical row; one line per one that cannot be used, e.g.
    ``image 2 '/data/x.png': no such file`` (numbered from 1). ``checked`` (ref -> problem or None),
    shared between calls, opens each distinct ref once."""
    problems = []
    for i, ref in enumerate(row.get("images") or (), 1):
        problem = _problem(_open, ref, checked)
        if problem is not None:
            problems.append(f"image {i} {_short(ref)!r}: {problem}")
    for i, ref in enumerate(row.get("videos") or (), 1):
        problem = _problem(_open_video, ref, checked)
        if problem is not None:
            problems.append(f"video {i} {_short_video(ref)!r}: {problem}")
    for i, ref in enumerate(row.get("audios") or (), 1):
        problem = _problem(_decode_audio, ref, checked)
        if problem is not None:
            problems.append(f"audio {i} {_short(ref)!r}: {problem}")
    return problems
