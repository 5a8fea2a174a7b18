"""``python -m kling_gateway.fake_upstream --port 8900``: serve a fake upstream."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from kling_gateway.fake_upstream.accounts import accounts_from_json
from kling_gateway.fake_upstream.app import run_fake_upstream
from kling_gateway.fake_upstream.config import FakeUpstreamConfig, faults_from_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900)
    parser.add_argument("--access-key", default="fake-access-key")
    parser.add_argument("--secret-key", default="fake-secret-key")
    parser.add_argument("--finish-min", type=float, default=2.0, help="seconds")
    parser.add_argument("--finish-max", type=float, default=5.0, help="seconds")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--public-url", default=None, help="base URL of result links")
    parser.add_argument("--faults", default=None, help='JSON, e.g. {"server_error": {"count": 1}}')
    parser.add_argument(
        "--accounts",
        default=None,
        help='JSON list: [{"name", "access_key", "secret_key", "max_concurrency"}, ...]',
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kling-gateway fake-upstream")
    add_arguments(parser)
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> FakeUpstreamConfig:
    return FakeUpstreamConfig(
        access_key=args.access_key,
        secret_key=args.secret_key,
        processing_after=min(0.5, args.finish_min),
        finish_after=(args.finish_min, args.finish_max),
        seed=args.seed,
        public_url=args.public_url,
        faults=faults_from_json(json.loads(args.faults)) if args.faults else {},
        accounts=accounts_from_json(json.loads(args.accounts)) if args.accounts else [],
    )


def run(args: argparse.Namespace) -> None:
    run_fake_upstream(args.host, args.port, config_from_args(args))


def main(argv: Sequence[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
