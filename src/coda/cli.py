"""The ``coda`` command line: setup, chat, talk, serve, wyoming, bench, eval and store."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pydantic import ValidationError as PydanticValidationError
from tqdm import tqdm

from coda.bench.command import add_bench_parser
from coda.server.settings import ServerSettings
from coda.talk.command import add_talk_parser, run_talk
from coda.talk.console import tool_said
from coda.voice import (
    VoiceConfig,
    VoiceManager,
    VoiceMessage,
    VoiceProcessingError,
    VoiceProcessingMode,
)

INTEGRATION_FLAGS = ("memory", "personality", "tools", "sync")
"""Integrations a ``--no-NAME`` flag switches off."""

TIMING_ORDER = (
    "frontend",
    "asr",
    "hooks",
    "llm_first_token",
    "llm_total",
    "tts_first_audio",
    "tts_total",
    "moshi_first_audio",
    "moshi_total",
    "first_audio",
    "total",
)


class ProgressBars:
    """tqdm bars for the engine's (stage, done, total) progress callbacks."""

    def __init__(self) -> None:
        self._bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Advance (or open) the bar of ``stage``."""
        bar = self._bars.get(stage)
        if bar is None:
            is_bytes = total > 1_000_000
            bar = tqdm(
                total=total,
                desc=stage,
                unit="B" if is_bytes else "step",
                unit_scale=is_bytes,
                leave=True,
                file=sys.stderr,
            )
            self._bars[stage] = bar
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    def close(self) -> None:
        """Close any bar left open."""
        for bar in self._bars.values():
            bar.close()


def _settings(args: argparse.Namespace) -> ServerSettings:
    """Every command's settings: ``--config`` (TOML), then ``CODA_*``, then flags."""
    from coda.server.settings import load_settings

    return load_settings(
        args.config,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        llm=args.llm,
        llm_model=args.llm_model,
        llm_url=args.llm_url,
        moshi_url=args.moshi_url,
        store=args.store,
        models=args.models,
        **{name: False for name in INTEGRATION_FLAGS if getattr(args, f"no_{name}", False)},
    )


def _config(args: argparse.Namespace) -> VoiceConfig:
    return replace(_settings(args).voice_config(), log_level=args.log_level)


def _format_timings(timings: dict[str, float]) -> str:
    keys = [k for k in TIMING_ORDER if k in timings]
    return "  ".join(f"{k}={timings[k]:.0f}ms" for k in keys)


async def _loaded(args: argparse.Namespace) -> VoiceManager:
    """The voice manager with its models loaded, progress shown on stderr."""
    manager = VoiceManager(_config(args))
    bars = ProgressBars()
    try:
        await manager.initialize(bars)
    finally:
        bars.close()
    return manager


async def _chat(args: argparse.Namespace) -> int:
    if not args.files and not args.text:
        print("coda chat: give audio files or --text", file=sys.stderr)
        return 2
    turns: list[tuple[str, bytes, str | None]] = []
    for path in args.files:
        try:
            turns.append((path.name, path.read_bytes(), None))
        except OSError as exc:
            print(f"coda chat: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 2
    turns.extend((f"text {i + 1}", b"", text) for i, text in enumerate(args.text or []))
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)

    manager = await _loaded(args)
    stats = manager.get_stats()
    print(f"language model: {stats['llm_provider']} ({stats['llm_reason']})")
    if stats["moshi_servers"]:
        print("moshi: " + ", ".join(server["url"] for server in stats["moshi_servers"]))
    conversation_id = args.conversation_id or f"chat-{int(time.time())}"
    mode = VoiceProcessingMode(args.mode) if args.mode else None
    failures = 0
    try:
        for index, (name, audio, text) in enumerate(turns, start=1):
            message = VoiceMessage(conversation_id, audio, text_content=text, speaker=args.user)
            print(f"\n[turn {index}] {name}")
            try:
                response = await manager.process_voice_message(message, mode=mode)
            except VoiceProcessingError as exc:
                failures += 1
                print(f"  error: {type(exc).__name__}: {exc}")
                continue
            print(f"  you:  {response.metadata['transcript']}")
            for memory in response.metadata.get("memories", []):
                print(f"  memory: {memory['text']}")
            for call in response.metadata.get("tool_results", []):
                said = tool_said(call["success"], call["result"], call["error"])
                print(f"  tool: {call['tool_name']} → {said}")
            answered_by = response.processing_mode.value if response.processing_mode else "?"
            print(f"  coda: {response.text_content}  [{answered_by}]")
            print(f"  time: {_format_timings(response.metadata['timings_ms'])}")
            if response.audio_data:
                reply = out_dir / f"turn{index:02d}_reply.wav"
                reply.write_bytes(response.audio_data)
                print(f"  wav:  {reply}")
    finally:
        await manager.cleanup()
    return 1 if failures else 0


async def _talk(args: argparse.Namespace) -> int:
    return await run_talk(args, _loaded)


async def _setup(args: argparse.Namespace) -> int:
    from coda.assets.embedded import piper_joe_voice, qwen_gguf, whisper_tiny_en_dir

    config = _config(args)
    print(f"speech recognition: {whisper_tiny_en_dir()}")
    print(f"speech synthesis:   {piper_joe_voice()}")
    bars = ProgressBars()
    try:
        path = qwen_gguf(
            config.resolved_model_dir(),
            lambda done, total: bars("assemble language model", done, total),
        )
    finally:
        bars.close()
    print(f"language model:     {path} (sha256 verified)")
    return 0


async def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from coda.server import logs
    from coda.server.app import create_app

    logs.configure(args.log_level)
    settings = _settings(args)
    app = create_app(settings)
    print(f"Coda is listening on http://{settings.host}:{settings.port}/ (API docs at /docs)")
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            ws="websockets-sansio",
            # A websocket message is refused by its size before it is all in memory,
            # and none is compressed (a small message could unpack to a huge one).
            ws_max_size=max(settings.max_frame_bytes, settings.max_event_bytes),
            ws_per_message_deflate=False,
            log_config=None,  # keep the JSON logs configured above
        )
    )
    await server.serve()
    return 0


async def _wyoming(args: argparse.Namespace) -> int:
    """``coda wyoming``: Coda's recognizer, voice and assistant for Home Assistant."""
    from functools import partial

    from wyoming.server import AsyncServer

    from coda.wyoming.handler import CodaEventHandler

    server = AsyncServer.from_uri(args.uri)
    manager = await _loaded(args)
    print(f"Coda is listening for Wyoming clients on {args.uri}", flush=True)
    try:
        await server.run(partial(CodaEventHandler, manager, f"wyoming/{args.user}"))
    finally:
        await manager.cleanup()
    return 0


async def _bench(args: argparse.Namespace) -> int:
    from coda.bench.command import run_bench

    return await run_bench(args, _config)


async def _store(args: argparse.Namespace) -> int:
    """``coda store check``: the store's consistency (exit 1 if anything is wrong)."""
    from coda.store.backends import conversation_store

    location = _config(args).store_location()
    store = conversation_store(location)
    await store.open()
    try:
        problems = await store.check()
    finally:
        await store.close()
    for problem in problems:
        print(f"{location.redacted()}: {problem}")
    print(f"{location.redacted()}: {'consistent' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


async def _eval(args: argparse.Namespace) -> int:
    from coda.eval.cases import CaseFilter
    from coda.eval.command import run_eval_command

    chosen = CaseFilter(
        args.fast,
        tuple(v.strip() for v in args.voices.split(",") if v.strip()),
        tuple(c.strip() for c in args.only.split(",") if c.strip()),
    )
    return await run_eval_command(
        _config(args), args.cases, chosen, args.eval_llms, args.eval_stts, args.chart
    )


def _local_user() -> str:
    """This machine's login name, as a speaker id (``local`` when there is none)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        return "local"
    return "".join(c for c in name if c.isalnum() or c in "_.-")[:64] or "local"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``coda``."""
    parser = argparse.ArgumentParser(prog="coda", description="Coda Voice: talk to an assistant.")
    parser.add_argument("--log-level", default=os.environ.get("CODA_LOG_LEVEL", "WARNING"))
    parser.add_argument(
        "--store", help="an SQLite file, or postgresql://… to share with other instances"
    )
    parser.add_argument("--models", help="folder for assembled models")
    parser.add_argument(
        "--config", type=Path, help="TOML settings file (CODA_* variables and flags override it)"
    )
    parser.add_argument("--llm", choices=["auto", "llamacpp", "ollama", "openai"])
    parser.add_argument("--llm-model", help="model name (remote) or GGUF path (llamacpp)")
    parser.add_argument("--llm-url", help="server URL for ollama/openai")
    parser.add_argument(
        "--moshi-url", help="a Moshi server's chat websocket, e.g. ws://127.0.0.1:8998/api/chat"
    )
    for name in INTEGRATION_FLAGS:
        parser.add_argument(f"--no-{name}", action="store_true", help=f"switch {name} off")
    commands = parser.add_subparsers(dest="command", required=True)

    chat = commands.add_parser("chat", help="hold a spoken conversation from audio files")
    chat.add_argument("files", nargs="*", type=Path, help="one audio file per user turn")
    chat.add_argument("--text", action="append", help="a typed user turn (skips recognition)")
    chat.add_argument("--out", type=Path, default=Path("out"), help="folder for reply WAVs")
    chat.add_argument("--conversation-id", help="continue or name a conversation")
    chat.add_argument("--mode", choices=[m.value for m in VoiceProcessingMode])
    chat.add_argument(
        "--user",
        default=_local_user(),
        help="who is speaking: memories and personality are theirs (default: your login)",
    )

    add_talk_parser(commands, _local_user())
    commands.add_parser("setup", help="assemble and verify the embedded models")

    serve = commands.add_parser("serve", help="the REST + websocket server and browser client")
    serve.add_argument("--host", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8700)")

    wyoming = commands.add_parser(
        "wyoming", help="a Wyoming server: speech to text, text to speech and the assistant"
    )
    wyoming.add_argument(
        "--uri", default="tcp://127.0.0.1:10700", help="tcp://HOST:PORT, unix://PATH or stdio://"
    )
    wyoming.add_argument(
        "--user", default="home", help="whose memories and personality the conversation uses"
    )
    add_bench_parser(commands)
    store = commands.add_parser("store", help="look after the store")
    store.add_argument(
        "action", choices=["check"], help="check: report turns half written or miscounted"
    )
    evaluate = commands.add_parser(
        "eval", help="scripted conversations: memory, perspective, tools, knowledge"
    )
    evaluate.add_argument("--cases", type=Path, help="a TOML case file (default: the shipped one)")
    evaluate.add_argument("--fast", action="store_true", help="only the cases marked fast")
    evaluate.add_argument("--only", default="", help="categories to run, e.g. recall,unknown")
    evaluate.add_argument(
        "--voices", default="typed,piper,espeak", help="how recall pairs are said (comma-separated)"
    )
    evaluate.add_argument(
        "--llm", dest="eval_llms", action="append",
        help="a GGUF file, or 'embedded'; repeat to compare models",
    )  # fmt: skip
    evaluate.add_argument(
        "--stt", dest="eval_stts", action="append",
        help="the recognizer, tiny.en or base, optionally :beamN (tiny.en:beam5); repeatable",
    )  # fmt: skip
    evaluate.add_argument("--chart", type=Path, default=Path("out/eval.png"), help="PNG chart")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coda`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    handlers = {"chat": _chat, "talk": _talk, "setup": _setup, "bench": _bench, "serve": _serve,
                "eval": _eval, "store": _store, "wyoming": _wyoming}  # fmt: skip
    handler = handlers[args.command]
    try:
        return asyncio.run(handler(args))
    except (PydanticValidationError, OSError) as exc:
        print(f"coda {args.command}: bad configuration: {exc}", file=sys.stderr)
        return 2
    except VoiceProcessingError as exc:
        print(f"coda {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
