"""`python -m services` (what `make run` calls): the whole Jifen suite on one machine.

Uses JIFEN_DATABASE_URL / JIFEN_KAFKA_BOOTSTRAP when set; otherwise starts the embedded
PostgreSQL (data kept under .data/ across restarts) and the embedded broker on 127.0.0.1:9092.
Ctrl-C drains in-flight events (outboxes, pending behaviors, consumer lag) and then stops.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

from console.settings import DEV_CONSOLE_PASSWORD
from services.devstack import (
    EmbeddedBroker,
    Stack,
    drain,
    start_embedded_postgres,
    stop_embedded_postgres,
)
from shared.settings import DEV_ADMIN_TOKEN, DEV_INGEST_KEY

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m services", description=__doc__)
    parser.add_argument(
        "--data-dir", default=str(ROOT / ".data"), help="where embedded state lives"
    )
    parser.add_argument(
        "--base-port", type=int, default=8000, help="the console on base, services on base+1.."
    )
    parser.add_argument("--broker-port", type=int, default=9092, help="the embedded broker's port")
    parser.add_argument(
        "--no-seed", action="store_true", help="do not seed the demo rules and catalog"
    )
    args = parser.parse_args()

    data_dir = Path(args.data_dir).resolve()
    database_url = os.environ.get("JIFEN_DATABASE_URL")
    bootstrap = os.environ.get("JIFEN_KAFKA_BOOTSTRAP")
    broker = None
    if not database_url:
        print(f"starting embedded PostgreSQL in {data_dir / 'postgres'} ...", flush=True)
        database_url = start_embedded_postgres(data_dir / "postgres")
    if not bootstrap:
        broker = EmbeddedBroker(port=args.broker_port)
        print(f"starting embedded Kafka-compatible broker on {broker.bootstrap} ...", flush=True)
        bootstrap = broker.start(log_path=data_dir / "broker.log")

    stack = Stack(
        database_url=database_url,
        kafka_bootstrap=bootstrap,
        base_port=args.base_port,
        env={
            "JIFEN_SEED_DEMO": "false" if args.no_seed else "true",
            "JIFEN_LOG_JSON": os.environ.get("JIFEN_LOG_JSON", "false"),
        },
        log_dir=data_dir / "logs",
    )
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        print("starting services (migrating databases, creating topics) ...", flush=True)
        stack.start()
        admin = os.environ.get("JIFEN_ADMIN_TOKEN", DEV_ADMIN_TOKEN)
        print("\nJifen is running:")
        if stack.console:
            print(f"  {'console':<16} {stack.url('console')}   (operators sign in here)")
        for service in stack.services:
            print(f"  {service:<16} {stack.url(service)}   (docs: {stack.url(service)}/docs)")
        print(
            f"\n  broker   {bootstrap}\n  database {database_url}\n  logs     {data_dir / 'logs'}"
        )
        if admin == DEV_ADMIN_TOKEN:
            print(
                f"  admin token '{DEV_ADMIN_TOKEN}', ingest key '{DEV_INGEST_KEY}' (dev defaults)"
            )
        if stack.console and not os.environ.get("JIFEN_CONSOLE_USERS"):
            print(
                f"  console operators admin / operator / viewer, password '{DEV_CONSOLE_PASSWORD}'"
            )
        print("\nPress Ctrl-C to drain in-flight events and stop.", flush=True)
        while not stop.is_set():
            for service, proc in list(stack.processes.items()):
                if proc.poll() is not None:
                    print(f"{service} exited ({proc.returncode}); restarting", flush=True)
                    stack.start_service(service)
            stop.wait(1)
        print("\ndraining in-flight events ...", flush=True)
        drained = asyncio.run(drain(database_url, bootstrap, timeout=60))
        print("drained." if drained else "drain timed out; stopping anyway.", flush=True)
        return 0
    finally:
        stack.stop()
        if broker is not None:
            broker.stop()
        stop_embedded_postgres()
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
