"""Opening an uploaded zip of a DICOM folder without trusting it (zip bombs, path traversal, huge archives).

Members are written under numbered names in a folder the caller owns (their own paths are never used, so
``../`` and absolute names cannot escape it), and the archive is refused before extracting anything when it
declares too many files, too many bytes, or a member compressed more than any DICOM slice plausibly is.
Sizes are enforced again while reading, since a zip's declared sizes can lie.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from brainseg.studies.geometry import StudyError

MAX_MEMBERS = 4000  # a brain series has a few hundred slices at most
MAX_TOTAL_BYTES = 1 << 30  # 1 GiB uncompressed
MAX_RATIO = 200  # uncompressed / compressed per member; MR slices compress 2-10x, zip bombs 1000x+
_CHUNK = 1 << 20


def member_file_name(index: int, member: str) -> str:
    """``00037_IM0042`` for the 38th member ``scans/IM0042``: numbered so that no member's path is ever used
    (nor two members collide), with its own base name, made safe, so that messages name a file the user has."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath(member.replace("\\", "/")).name).lstrip(".")[:80]
    return f"{index:05d}_{base}" if base else f"{index:05d}"


def extract_dicom_zip(data: bytes, target: str | Path, name: str = "upload.zip") -> Path:
    """Write the zip's files into ``target`` (see ``member_file_name``) and return ``target``."""
    target = Path(target)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise StudyError(f"{name}: not a zip archive ({err})") from err
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if not members:
            raise StudyError(f"{name}: the zip archive is empty")
        if len(members) > MAX_MEMBERS:
            raise StudyError(f"{name}: {len(members)} files in the archive (at most {MAX_MEMBERS})")
        declared = sum(m.file_size for m in members)
        if declared > MAX_TOTAL_BYTES:
            raise StudyError(f"{name}: unpacks to {declared / 2**20:.0f} MiB (at most {MAX_TOTAL_BYTES // 2**20} MiB)")
        for member in members:
            if member.file_size > MAX_RATIO * max(member.compress_size, 1) and member.file_size > _CHUNK:
                raise StudyError(f"{name}: a member is compressed {member.file_size // max(member.compress_size, 1)}"
                                 f"x (more than {MAX_RATIO}x): refused as a possible zip bomb")
        target.mkdir(parents=True, exist_ok=True)
        written = 0
        for k, member in enumerate(members):
            try:
                with archive.open(member) as source, open(target / member_file_name(k, member.filename), "wb") as sink:
                    while chunk := source.read(_CHUNK):
                        written += len(chunk)
                        if written > MAX_TOTAL_BYTES:
                            raise StudyError(f"{name}: unpacks to more than {MAX_TOTAL_BYTES // 2**20} MiB")
                        sink.write(chunk)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, OSError, zlib.error) as err:
                raise StudyError(f"{name}: a member cannot be unpacked ({type(err).__name__}: {err})") from err
    return target
