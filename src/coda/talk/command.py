"""``coda talk``: its arguments, and the console it runs."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from coda.core.enums import VoiceProcessingMode
from coda.talk.console import TalkOptions, talk
from coda.talk.devices import choice, list_devices, require
from coda.voice.manager import VoiceManager

Loader = Callable[[argparse.Namespace], Awaitable[VoiceManager]]


def add_talk_parser(commands: Any, default_user: str) -> None:
    """Add ``talk`` to ``coda``'s subcommands."""
    talk_parser = commands.add_parser(
        "talk", help="a live conversation on the microphone and speakers (Ctrl-C ends it)"
    )
    talk_parser.add_argument("--mode", choices=[m.value for m in VoiceProcessingMode])
    talk_parser.add_argument("--conversation-id", help="continue (or name) a conversation")
    talk_parser.add_argument("--user", default=default_user, help="who is speaking")
    talk_parser.add_argument(
        "--input-device", help="microphone: index or name (see --list-devices)"
    )
    talk_parser.add_argument("--output-device", help="speakers: index or name")
    talk_parser.add_argument(
        "--list-devices", action="store_true", help="list the sound devices and exit"
    )
    talk_parser.add_argument(
        "--push-to-talk",
        action="store_true",
        help="the microphone counts only while space is held (or between two Enters)",
    )


async def run_talk(args: argparse.Namespace, loaded: Loader) -> int:
    """Run ``coda talk``; raises ``AudioDeviceError`` when there is no sound device."""
    if args.list_devices:
        print(list_devices())
        return 0
    options = TalkOptions(
        conversation_id=args.conversation_id or f"talk-{int(time.time())}",
        mode=VoiceProcessingMode(args.mode) if args.mode else None,
        speaker=args.user,
        devices=choice(args.input_device, args.output_device),
        push_to_talk=args.push_to_talk,
    )
    require(options.devices)  # a missing sound card is told before the models load
    manager = await loaded(args)
    try:
        await talk(manager, options, sys.stdout)
    finally:
        await manager.cleanup()
    return 0
