"""Images and videos in dataset rows: the canonical form, the checks conversion makes, and opening them.

A canonical row with images is ``{"messages": [...], "images": [ref, ...], ...}``: each image sits in a
message's (string) content as the tag ``<image>`` (:data:`IMAGE_TAG`), and ``images`` holds one ref per
tag, in the order the tags come in the conversation. A ref is a string: an absolute local path, an
``http(s)://`` URL or a data URL ``data:image/<format>;base64,...``. A row without images has no
``images`` key, and an ``<image>`` in its text is plain text. Videos are the same with ``<video>``
(:data:`VIDEO_TAG`) and ``videos``: a video's ref is a video file's absolute path or ``http(s)://`` URL, or a
list of image refs (its frames).

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
* OpenAI content parts in a message: ``content`` a list of ``{"type": "text", "text": ...}``,
  ``{"type": "image_url", "image_url": {"url": ...}}`` (or ``"image_url": "..."``),
  ``{"type": "image", "image": ref}``, ``{"type": "video_url", "video_url": {"url": ...}}`` and
  ``{"type": "video", "video": file or frames}``, flattened to a string with ``<image>`` / ``<video>`` where each
  part was (:func:`parts_to_tags`).

Refused, as a :class:`~swiftkit.data.errors.RowError` naming the row and a ``kind`` that lint counts:
audio, as a column or parts (``unsupported_media``); a tag in an assistant message (``image_in_reply``,
``video_in_reply``); a number of tags other than the number of images or videos (``image_count``,
``video_count``); a ref that is neither a string nor such an object (``wrong_type``); a ref of no usable form,
or images (videos) given both as a column and as parts (``image_ref``, ``video_ref``).

Conversion never opens an image or a video: training loads each one when it encodes the row (:func:`load_image`,
:func:`load_video`), and ``swiftkit data lint`` opens them all (:func:`check_images`).
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
DOWNLOAD_TIMEOUT_S = 30
# A video file is decoded into at most this many frames, taken evenly over the whole video (a video given as a
# list of frames is used as it is).
MAX_VIDEO_FRAMES = 32
# Where conversion keeps the images and videos of a message's content parts until the row's media are gathered.
PART_IMAGES = "_images"
PART_VIDEOS = "_videos"
OTHER_MEDIA = ("audios",)  # columns refused for now
_OTHER_PARTS = {"audio": "audios", "audio_url": "audios", "input_audio": "audios"}
_FORMATS = "png, jpeg, gif, webp, bmp, tiff, avif"
_DATA_URL = re.compile(r"data:image/[\w.+-]+(;[\w.+=-]+)*;base64,", re.IGNORECASE)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_SHOWN = 40  # characters of a data URL or base64 string shown in messages


def unsupported(key: str) -> str:
    """The one-line refusal of a kind of media swiftkit does not train on (``audios``)."""
    return f"{key} are not supported yet: swiftkit trains on images, videos and text"


def has_media(row) -> bool:
    """Whether a canonical row holds images or videos (it is then encoded with the model's processor)."""
    return isinstance(row, dict) and bool(row.get("images") or row.get("videos"))


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
    scheme = _SCHEME.match(text)
    if text[:5].lower() == "data:" or (scheme is not None and scheme.group(1).lower() not in ("http", "https", "file")):
        raise RowError(where, f"{label}: a video is a file's local path or http(s) URL, or a list of frame images; "
                       f"got {_short(text)!r}", "video_ref")
    if scheme is not None and scheme.group(1).lower() == "file":
        try:
            return _file_url_path(text)
        except ValueError as exc:
            raise RowError(where, f"{label}: {exc}", "video_ref") from exc
    if scheme is not None:
        return text
    path = os.path.expanduser(text)
    return path if os.path.isabs(path) else os.path.join(folder or os.getcwd(), path)


def column_videos(value, where: str, folder: str | None = None) -> list:
    """The canonical refs of a ``videos`` column's value: a list of videos (each a file's path or URL, or a list of
    frames), or a single video file; None, ``""`` and ``[]`` are no video."""
    if value is None or value == "" or value == []:
        return []
    if not isinstance(value, list):
        return [_video_ref(value, where, "videos", folder)]
    return [_video_ref(item, where, f"videos[{i}]", folder) for i, item in enumerate(value)]


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


def flatten_parts(parts: list[dict], where: str, label: str,
                  folder: str | None = None) -> tuple[str, list[str], list]:
    """One message's content parts -> ``(its text with <image> / <video> where each image / video part was, the
    images' canonical refs, the videos' canonical refs)``; ``label`` names the message in errors
    (``messages[2]``). A video part is ``{"type": "video", "video": file or frames}`` or
    ``{"type": "video_url", "video_url": {"url": ...}}``."""
    texts, refs, videos = [], [], []
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
        elif kind in ("video_url", "video"):
            value = part.get(kind)
            if kind == "video_url" and isinstance(value, dict):
                value = value.get("url")
            if value is None:
                needs = "'video_url': {'url': ...}" if kind == "video_url" else "'video'"
                raise RowError(where, f"{at}: a {kind} part needs {needs} (found keys {sorted(part)})",
                               "missing_field")
            videos.append(_video_ref(value, where, f"{at}.{kind}", folder))
            texts.append(VIDEO_TAG)
        elif kind in _OTHER_PARTS:
            raise RowError(where, unsupported(_OTHER_PARTS[kind]), "unsupported_media")
        else:
            raise RowError(where, f"{at}: unknown content part type {kind!r}; expected 'text', 'image_url', "
                           "'image', 'video_url' or 'video'", "wrong_type")
    return "".join(texts), refs, videos


def parts_to_tags(messages: list, where: str, folder: str | None = None) -> tuple[list, list[str], list]:
    """``messages`` with each content-parts ``content`` flattened to a string (``<image>`` / ``<video>`` where
    each image / video part was), and the images' and videos' canonical refs in order (relative paths resolved
    against ``folder``, by default the working directory). Messages with string contents are kept as they are.
    A bad part is a :class:`~swiftkit.data.errors.RowError` (a ``DatasetError``) naming ``where``."""
    out, images, videos = [], [], []
    for i, msg in enumerate(messages):
        if isinstance(msg, dict) and is_content_parts(msg.get("content")):
            content, refs, clips = flatten_parts(msg["content"], where, f"messages[{i}]", folder)
            msg = {**msg, "content": content}
            images += refs
            videos += clips
        out.append(msg)
    return out, images, videos


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _gathered(messages: list[dict], column: list, where: str, rejected: str | None, kind: str) -> list:
    """The ``kind`` (``image`` / ``video``) media of a converted row: those its content parts gave (kept on each
    message under ``_images`` / ``_videos``) or those of its column, checked against the messages' tags."""
    tag, key = (IMAGE_TAG, PART_IMAGES) if kind == "image" else (VIDEO_TAG, PART_VIDEOS)
    parts: list = []
    for m in messages:
        parts += m.get(key, ())
    if parts and column:
        raise RowError(where, f"the row gives {kind}s both in '{kind}s' and as content parts; give them one way",
                       f"{kind}_ref")
    media = parts or column
    if not media:
        return []
    for i, msg in enumerate(messages):
        if msg["role"] == "assistant" and tag in msg["content"]:
            raise RowError(where, f"messages[{i}]: {kind}s in assistant replies are not supported: put them in user "
                           "turns", f"{kind}_in_reply")
    if rejected is not None and tag in rejected:
        raise RowError(where, f"'rejected_response': {kind}s in assistant replies are not supported: put them in "
                       "user turns", f"{kind}_in_reply")
    tags = count_image_tags(messages, tag)
    if tags != len(media):
        article = "an" if kind == "image" else "a"
        hint = f": put {article} {tag} tag in a user turn where each {kind} goes" if tags == 0 else ""
        raise RowError(where, f"{_plural(tags, tag + ' tag')} in the messages but "
                       f"{_plural(len(media), kind)}{hint}", f"{kind}_count")
    return media


def gather_images(messages: list[dict], column: list[str], where: str, rejected: str | None = None,
                  videos: list | None = None) -> tuple[list[dict], list[str], list]:
    """The messages, images and videos of a converted row: the images and videos its content parts gave (kept on
    each message under :data:`PART_IMAGES` / :data:`PART_VIDEOS`, taken off here) or those of its ``images`` /
    ``videos`` columns (``column`` / ``videos``, canonical refs), each checked against the ``<image>`` /
    ``<video>`` tags of the messages (and of ``rejected``, the rejected reply of a preference pair). No media:
    the messages as they are, ``[]`` and ``[]``."""
    images = _gathered(messages, column, where, rejected, "image")
    clips = _gathered(messages, list(videos or ()), where, rejected, "video")
    if any(PART_IMAGES in m or PART_VIDEOS in m for m in messages):
        messages = [{k: v for k, v in m.items() if k not in (PART_IMAGES, PART_VIDEOS)} for m in messages]
    return messages, images, clips


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
    """Open every image and video of a canonical row; one line per one that cannot be used, e.g.
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
    return problems
