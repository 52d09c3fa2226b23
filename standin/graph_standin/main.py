"""`whatsapp-graph-standin`: serve the Graph API stand-in, seed it, or make it send a message.

    whatsapp-graph-standin serve [--port 8089] [--seed numbers.json]
    whatsapp-graph-standin seed numbers.json            # into a running stand-in
    whatsapp-graph-standin send-text --phone-number-id 106540352242922 "hello"

Credentials are only ever read from files or the admin API, never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop
from pydantic import TypeAdapter, ValidationError

from .app import GraphStandin
from .caller import is_loopback_host
from .state import NumberSeed

DEFAULT_PORT = 8089
URL_ENV = "WA_GRAPH_STANDIN_URL"
_SEEDS = TypeAdapter(list[NumberSeed])


def default_url() -> str:
    return os.environ.get(URL_ENV, f"http://127.0.0.1:{DEFAULT_PORT}")


def load_seeds(path: Path) -> list[NumberSeed]:
    """A seed file: a JSON list of numbers, or {"numbers": [...]}."""
    data: Any = json.loads(path.read_text())
    if isinstance(data, dict):
        data = data.get("numbers", [])
    return _SEEDS.validate_python(data)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="whatsapp-graph-standin", description=__doc__.split("\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the stand-in (loopback only)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT)
    serve.add_argument("--seed", type=Path, help="JSON file of phone numbers to start with")
    serve.add_argument("--challenge-timeout", type=float, default=5.0)
    serve.add_argument(
        "--account-call-limit",
        type=int,
        help="calls per app and business account an hour before 80007 (default: no limit)",
    )
    serve.add_argument("--log-level", default="INFO")

    seed = commands.add_parser("seed", help="add phone numbers to a running stand-in")
    seed.add_argument("file", type=Path)
    seed.add_argument("--url", default=default_url(), help=f"stand-in URL (${URL_ENV})")

    send = commands.add_parser(
        "send-text", help="send a signed inbound text to a number's registered callback"
    )
    send.add_argument("--phone-number-id", required=True)
    send.add_argument("--from", dest="sender", default="16315551181", help="the customer's wa_id")
    send.add_argument("--url", default=default_url(), help=f"stand-in URL (${URL_ENV})")
    send.add_argument("text")

    signup = commands.add_parser(
        "signup",
        help="a tenant finishing Embedded Signup: print a code (30 s, once) with the "
        "number and its account, as JSON",
    )
    signup.add_argument("--app-id", required=True, help="the platform app's id")
    signup.add_argument("--phone-number-id", required=True, help="a seeded number")
    signup.add_argument(
        "--session", help="the popup this finishes (GET /_standin/sessions; the page's test)"
    )
    signup.add_argument("--url", default=default_url(), help=f"stand-in URL (${URL_ENV})")
    return top


async def serve(args: argparse.Namespace) -> None:
    standin = GraphStandin(
        args.host,
        args.port,
        challenge_timeout=args.challenge_timeout,
        account_call_limit=args.account_call_limit,
    )
    for number in load_seeds(args.seed) if args.seed else []:
        standin.seed(number)
    await standin.start()
    print(f"Graph API stand-in: {standin.url}  (admin API: {standin.url}/_standin/)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await standin.stop()


def admin_call(url: str, path: str, body: dict[str, Any]) -> tuple[int, str]:
    request = urllib.request.Request(  # noqa: S310 - the URL is checked to be loopback http
        url.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def check_admin_url(url: str) -> str | None:
    from yarl import URL

    parsed = URL(url)
    if parsed.scheme != "http" or not is_loopback_host(parsed.host):
        return f"the stand-in's URL must be http on loopback, not {url!r}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "serve":
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        try:
            # uvloop, as the operator: the stand-in shares the machine it plays Meta on.
            uvloop.run(serve(args))
        except (ValueError, OSError, ValidationError) as exc:
            print(f"whatsapp-graph-standin: cannot start: {exc}", file=sys.stderr)
            return 2
        return 0
    problem = check_admin_url(args.url)
    if problem:
        print(f"whatsapp-graph-standin: {problem}", file=sys.stderr)
        return 2
    try:
        if args.command == "seed":
            for number in load_seeds(args.file):
                status, text = admin_call(
                    args.url, "/_standin/numbers", number.model_dump(exclude_none=True)
                )
                if status != 201:
                    print(
                        f"seeding {number.phone_number_id}: HTTP {status}: {text}", file=sys.stderr
                    )
                    return 1
                print(f"seeded {number.phone_number_id}")
            return 0
        if args.command == "signup":
            body = {"app_id": args.app_id, "phone_number_id": args.phone_number_id}
            if args.session:
                body["session"] = args.session
            status, text = admin_call(args.url, "/_standin/signup", body)
            if status != 201:
                print(f"whatsapp-graph-standin: HTTP {status}: {text}", file=sys.stderr)
                return 1
            print(text)
            return 0
        status, text = admin_call(
            args.url,
            f"/_standin/numbers/{args.phone_number_id}/messages",
            {"text": args.text, "from": args.sender},
        )
    except (OSError, ValueError, ValidationError) as exc:
        print(f"whatsapp-graph-standin: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"whatsapp-graph-standin: HTTP {status}: {text}", file=sys.stderr)
        return 1
    result = json.loads(text)
    print(f"delivered to {result['callback_url']}: HTTP {result['status']}")
    return 0 if 200 <= result["status"] < 300 else 1


def run() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())


if __name__ == "__main__":
    run()
