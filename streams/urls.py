"""Camera URLs: the one check before anything is opened, the FFmpeg options every opener uses, and masking.

Whatever opens a camera source (readers, the admin's test and snapshot, clips,
live view) asks ``check_source`` first. FFmpeg opens far more than cameras:
``concat:``, ``file:``, ``http:``, ``tcp:``, ``data:`` and a dozen demuxers that
render any text file as a picture (tty) or read image sequences. So only
``rtsp://``/``rtsps://`` URLs and video files inside ``settings.media_dirs``
pass, and every open carries FFmpeg's own protocol and format whitelists, so a
redirect or a probe can never reach another protocol or demuxer either.

Camera URLs carry device passwords, in the userinfo or in the query
(``?user=admin&password=...``), and passwords may hold ``@``, ``/`` or spaces;
the maskers here over-mask rather than leak.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal
from urllib.parse import unquote, unquote_plus, urlsplit

MASK = "***"

RTSP_SCHEMES = ("rtsp", "rtsps")
DEFAULT_PORTS = {"rtsp": "554", "rtsps": "322"}
# TCP interleaved RTSP (rtsp_transport=tcp) needs no udp/rtp; rtsps adds tls. Checked against GStreamer's server.
RTSP_PROTOCOLS = "rtsp,rtsps,tcp,tls"
RTSP_FORMATS = "rtsp"
FILE_PROTOCOLS = "file"
# real video containers only: never tty (text as a picture), concat, image2, hls, lavfi or the like
FILE_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,mpegts,flv,h264,hevc,asf"

RTSP_TUNING = {
    "rtsp_transport": "tcp",
    "timeout": "3000000",  # µs; the socket-level timeout of FFmpeg's RTSP demuxer
    "analyzeduration": "500000",  # open in ~0.6 s instead of ~2.8 s (measured)
    "probesize": "65536",
}

SourceKind = Literal["rtsp", "file"]


class UnsafeSource(ValueError):
    """A URL gridwatch will not open. The message names the field and the fix, never what exists on disk."""

    def __init__(self, reason: str, field: str = "url"):
        self.reason, self.field = reason, field
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True)
class Source:
    """A checked source: what to hand to ``av.open`` (the URL, or the real path of a file) and with which options."""

    kind: SourceKind
    target: str
    options: dict[str, str] = field(default_factory=dict)


def open_options(kind: SourceKind) -> dict[str, str]:
    """FFmpeg options for opening a camera source of this kind: tuning plus the protocol and format whitelists."""
    if kind == "rtsp":
        return {**RTSP_TUNING, "protocol_whitelist": RTSP_PROTOCOLS, "format_whitelist": RTSP_FORMATS}
    return {"protocol_whitelist": FILE_PROTOCOLS, "format_whitelist": FILE_FORMATS}


RTSP_OPTIONS = open_options("rtsp")  # for code that opens RTSP URLs itself (benchmarks): the whitelists come along


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

NOT_ALLOWED = ("only rtsp:// and rtsps:// camera URLs, or video files inside a folder listed in settings.media_dirs, "
               "can be opened; write rtsp://HOST[:PORT]/PATH")
OUTSIDE_MEDIA = ("local video files can be opened only from the folders listed in settings.media_dirs (none by "
                 "default); add the file's folder there in the config file, or use an rtsp:// camera URL")


def scheme_of(url: str) -> str:
    """The URL's scheme in lower case; '' for a plain path."""
    m = _SCHEME.match(url)
    return m[1].lower() if m else ""


def is_file_url(url: str) -> bool:
    """A local path or a ``file:`` URL (which, to be opened at all, must lie in a media dir)."""
    return scheme_of(url) in ("", "file")


def local_path(url: str) -> str:
    """The path a file URL names (``file:/x``, ``file:///x``, ``file://localhost/x`` or a plain path)."""
    if scheme_of(url) != "file":
        return url
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise UnsafeSource("file URLs on other machines cannot be opened; " + OUTSIDE_MEDIA)
    return unquote(parts.path)


def inside(path: str | Path, media_dirs: Iterable[Path | str], base: Path | str | None = None) -> str | None:
    """The real path of ``path`` if it lies inside one of ``media_dirs`` (symlinks and '..' resolved), else None.

    Relative paths, of the file and of the folders alike, resolve against ``base`` (default: the working folder).
    """
    root = Path(base) if base is not None else Path.cwd()
    real = os.path.realpath(root / path)
    for d in media_dirs:
        top = os.path.realpath(root / d)
        if real != top and real.startswith(top.rstrip(os.sep) + os.sep):
            return real
    return None


def check_source(url: str, media_dirs: Iterable[Path | str] = (), field: str = "url",
                 base: Path | str | None = None) -> Source:
    """The one gate before a camera source is opened: an RTSP URL with a host, or a video file in a media dir."""
    if not isinstance(url, str) or not url:
        raise UnsafeSource("empty; " + NOT_ALLOWED, field)
    if _CONTROL.search(url):
        raise UnsafeSource("contains control characters (a line break?); type the URL on one line", field)
    scheme = scheme_of(url)
    if scheme in RTSP_SCHEMES:
        parts = split_url(url)
        try:
            ffmpeg_host = urlsplit(url).hostname  # FFmpeg ends the authority at the first '/': it must name a host too
        except ValueError:
            ffmpeg_host = None
        if parts is None or not parts.host or not ffmpeg_host:
            raise UnsafeSource("has no host; write rtsp://HOST[:PORT]/PATH", field)
        return Source("rtsp", url, open_options("rtsp"))
    if scheme not in ("", "file"):
        raise UnsafeSource(f"{scheme}: is not allowed; " + NOT_ALLOWED, field)
    try:
        path = local_path(url)
    except UnsafeSource as err:
        raise UnsafeSource(err.reason, field) from None
    real = inside(path, media_dirs, base) if path else None
    if real is None:
        raise UnsafeSource(OUTSIDE_MEDIA, field)
    return Source("file", real, open_options("file"))


# ---- parsing, for masking and for restoring a stored password ------------------------------------------------------
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.DOTALL)


@dataclass(frozen=True)
class UrlParts:
    """``scheme://[userinfo@]hostport rest``, with the userinfo running to the LAST '@'.

    Passwords may hold '@', '/', '?' or spaces typed raw; taking the last '@'
    puts all of them in the userinfo (a path with an '@' is then over-masked,
    never leaked). ``rest`` is path, query and fragment as typed.
    """

    scheme: str
    userinfo: str | None
    hostport: str
    rest: str

    @property
    def user(self) -> str | None:
        return None if self.userinfo is None else self.userinfo.partition(":")[0]

    @property
    def password(self) -> str | None:
        if self.userinfo is None or ":" not in self.userinfo:
            return None
        return self.userinfo.partition(":")[2]

    @property
    def host(self) -> str:
        hp = self.hostport
        if hp.startswith("["):
            return hp[1:hp.find("]")].lower() if "]" in hp else hp.lower()
        return hp.rpartition(":")[0].lower() if ":" in hp else hp.lower()

    @property
    def port(self) -> str:
        hp = self.hostport
        tail = hp[hp.find("]") + 1:] if hp.startswith("[") else hp
        port = tail.rpartition(":")[2] if ":" in tail else ""
        return port or DEFAULT_PORTS.get(self.scheme.lower(), "")


def split_url(url: str) -> UrlParts | None:
    """The parts of ``scheme://...`` (None for anything else, such as a plain path)."""
    m = _URL.match(url or "")
    if not m:
        return None
    rest = m[2]
    at = rest.rfind("@")
    userinfo, after = (rest[:at], rest[at + 1:]) if at >= 0 else (None, rest)
    end = min([i for i in (after.find(c) for c in "/?#") if i >= 0], default=len(after))
    return UrlParts(m[1], userinfo, after[:end], after[end:])


_SECRET_NAME = r"[^=&?#;\s\"'<>]*(?:pass|pwd|secret|token|key|auth|sig|cred)[^=&?#;\s\"'<>]*"
_QUERY_SECRET = re.compile(rf"(?<=[?&;])({_SECRET_NAME})=([^&#]*)", re.IGNORECASE)
_QUERY_SECRET_TEXT = re.compile(rf"(?<=[?&;])({_SECRET_NAME})=([^&#\s\"'<>\\]*)", re.IGNORECASE)
_USER_NAME = re.compile(r"^(user(name)?|usr|login|u|account)$", re.IGNORECASE)


def _secret_spans(url: str, query: re.Pattern = _QUERY_SECRET) -> list[tuple[int, int]]:
    """Where the password and the secret query values lie in ``url`` (a single URL), merged."""
    spans = []
    parts = split_url(url)
    if parts is not None and parts.password is not None:
        start = len(parts.scheme) + 3 + len(parts.user) + 1
        spans.append((start, start + len(parts.password)))
    spans += [m.span(2) for m in query.finditer(url) if m[2] and m[2] != MASK]
    merged: list[tuple[int, int]] = []
    for s, e in sorted(sp for sp in spans if sp[1] > sp[0]):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    for s, e in reversed(spans):
        text = text[:s] + MASK + text[e:]
    return text


def mask_url_field(url: str | None) -> str | None:
    """One URL (a camera's url field): its password and secret query values replaced with ``***``.

    Anything that is not ``scheme://...`` is masked as free text.
    """
    if url is None:
        return None
    if split_url(url) is None:
        return mask_text(url)
    return _replace(url, _secret_spans(url))


_SCHEME_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_CLOSING = {'"': '"', "'": "'", "`": "`", "<": ">"}


def _url_end(text: str, start: int, limit: int, opened_by: str) -> int:
    """Where a URL in free text ends: a line break, the quote it was opened with (any quote if none), or ``limit``.

    Not at a space: a space may be part of a password. A backslash escapes the
    next character, so a JSON text's ``\\"`` inside a password does not end it.
    """
    ends = "\n\r" + (_CLOSING[opened_by] if opened_by in _CLOSING else "\"'`<>")
    i = start
    while i < limit:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c in ends:
            return i
        i += 1
    return limit


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Free text (an error, a log line): every URL-looking token masked, and every known secret replaced.

    ``secrets`` (from ``url_secrets``) catch what no URL parser can: a password
    quoted apart from its URL, or cut at a space or quote. Secrets shorter than
    3 characters are not replaced (they would blank out every digit of a log line).
    """
    text = str(text)
    for secret in sorted({s for s in secrets if s and len(s) >= 3 and s != MASK}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    starts = [m.start() for m in _SCHEME_START.finditer(text)]
    out, pos = [], 0
    for i, s in enumerate(starts):
        if s < pos:
            continue
        limit = starts[i + 1] if i + 1 < len(starts) else len(text)
        end = _url_end(text, text.index("://", s) + 3, limit, text[s - 1] if s else "")
        out += [text[pos:s], _replace(text[s:end], _secret_spans(text[s:end], _QUERY_SECRET_TEXT))]
        pos = end
    out.append(text[pos:])
    text = "".join(out)
    return _QUERY_SECRET_TEXT.sub(lambda m: f"{m[1]}={MASK}" if m[2] else m[0], text)  # scheme-less ?password=


def mask_url(text: str) -> str:
    """Free text with every URL's password and secret query values masked (no known secrets: see ``mask_text``).

    Used on everything that may reach a log, an error or the API, because camera
    URLs carry device passwords.
    """
    return mask_text(text)


def mask_json(obj):
    """A JSON-like object with every string value masked as a URL field (the admin audit's request bodies)."""
    if isinstance(obj, dict):
        return {k: mask_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mask_json(v) for v in obj]
    if isinstance(obj, str):
        return mask_url_field(obj)
    return obj


def _query(rest: str) -> list[tuple[str, str]]:
    q = rest.partition("?")[2].partition("#")[0]
    return [(k, v) for k, _, v in (p.partition("=") for p in re.split(r"[&;]", q) if p)]


def _is_secret_name(name: str) -> bool:
    return re.fullmatch(_SECRET_NAME, name, re.IGNORECASE) is not None


def url_secrets(url: str | None) -> list[str]:
    """The secrets in one URL, as typed and percent-decoded: its password and its secret query values."""
    parts = split_url(url or "")
    if parts is None:
        return []
    raw = [parts.password] if parts.password else []
    raw += [m[2] for m in _QUERY_SECRET.finditer(url) if m[2]]
    out: list[str] = []
    for s in raw:
        for form in (s, unquote(s), unquote_plus(s)):
            if form and form != MASK and form not in out:
                out.append(form)
    return out


def has_masked_secret(url: str | None) -> bool:
    """Whether the URL still carries a masked secret (``user:***@`` or ``password=***``): it cannot be used as is."""
    parts = split_url(url or "")
    if parts is None:
        return False
    return parts.password == MASK or any(v == MASK and _is_secret_name(k) for k, v in _query(parts.rest))


def _identity(parts: UrlParts) -> tuple:
    """What a stored secret belongs to: scheme, host, port and user (in the userinfo or the query)."""
    query_users = tuple(sorted((k.lower(), v) for k, v in _query(parts.rest) if _USER_NAME.match(k)))
    return parts.scheme.lower(), parts.host, parts.port, parts.user, query_users


def restore_secrets(new_url: str | None, old_url: str | None) -> str | None:
    """A URL sent back with masked secrets (``***``) gets the stored ones, only for the same scheme, host, port and user.

    Anything else keeps its ``***`` (``has_masked_secret`` stays true) and the caller
    asks for the password: a stored password is never sent to a host it was not typed for.
    """
    if not has_masked_secret(new_url) or not old_url:
        return new_url
    new, old = split_url(new_url), split_url(old_url)
    if new is None or old is None or _identity(new) != _identity(old):
        return new_url
    userinfo = new.userinfo
    if new.password == MASK and old.password is not None:
        userinfo = f"{new.user}:{old.password}"
    stored = {k: v for k, v in _query(old.rest) if _is_secret_name(k)}

    def keep(m: re.Match) -> str:
        return f"{m[1]}={stored[m[1]]}" if m[2] == MASK and m[1] in stored else m[0]

    rest = _QUERY_SECRET.sub(keep, new.rest) if "?" in new.rest else new.rest
    return f"{new.scheme}://{userinfo + '@' if userinfo is not None else ''}{new.hostport}{rest}"


class MaskingFormatter(logging.Formatter):
    """A log formatter that masks every URL and every known secret in each formatted line (traceback included)."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, secrets: Iterable[str] = (), **kw):
        super().__init__(fmt, datefmt, **kw)
        self.secrets = list(secrets)

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Known secrets of cameras added while running (a new config)."""
        self.secrets += [s for s in secrets if s not in self.secrets]

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record), self.secrets)
