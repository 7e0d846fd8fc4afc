"""Serving benchmark: our BentoML ``/score`` against ``mlflow models serve`` on the same model.

Same machine, same registered model (``models:/leadscore@champion``), same leads, loopback only,
one server at a time, each with one worker:

* **ours** (``bentoml serve leadscore.serving.service:LeadScoringService``): ``/score`` on
  100-lead batches from 8 concurrent clients, with reasons (``explain=true``) and without;
  single-lead latency (p50/p99, one client) with and without reasons.
* **peer** (``mlflow models serve -m models:/leadscore@champion --env-manager local -w 1``):
  ``/invocations`` on the same batches with ``params: {"explain": false}`` (predict only), and
  with the pyfunc's default explanations for reference; single-row latency.

Server RSS (process tree) is read after warm-up and after the run. Results go to
``benchmarks/results/serving.json``. Bounded: a fixed number of requests per phase.

    python benchmarks/bench_serving.py                    # builds a 5,000-lead model under tmp
    python benchmarks/bench_serving.py --home /tmp/ls     # a LEADSCORE_HOME with a champion
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "serving.json"
API_KEY = "bench-key-" + "0" * 24
SERVICE = "leadscore.serving.service:LeadScoringService"


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def executable(name: str) -> str:
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return float("nan")
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return round(total / 2**20, 1)


@contextmanager
def running(command: list[str], *, env: dict[str, str], ready_url: str, log: Path, timeout: float = 180.0):
    with open(log, "w") as handle:
        process = subprocess.Popen(
            command, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, cwd=log.parent
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{command[0]} exited: {log.read_text()[-3000:]}")
            try:
                if httpx.get(ready_url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout}s: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


# --- load generation ------------------------------------------------------------------------------


def concurrent_batches(
    url: str, bodies: list[bytes], *, clients: int, headers: dict[str, str], check: Callable[[Any], int]
) -> dict[str, Any]:
    """Send every body once, ``clients`` at a time; count leads answered per second."""
    queue = list(range(len(bodies)))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    answered = [0]

    def loop() -> None:
        with httpx.Client(timeout=120) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    i = queue.pop()
                started = time.perf_counter()
                try:
                    response = client.post(url, content=bodies[i], headers=headers)
                    ok = response.status_code == 200
                    n = check(response.json()) if ok else 0
                except (httpx.HTTPError, ValueError) as error:
                    ok, n = False, 0
                    response = None
                    errors.append(type(error).__name__)
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    answered[0] += n
                    if not ok and response is not None:
                        errors.append(str(response.status_code))

    started = time.perf_counter()
    threads = [threading.Thread(target=loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "requests": len(bodies),
        "leads": answered[0],
        "wall_s": round(wall, 3),
        "leads_per_s": round(answered[0] / wall, 1),
        "request_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "request_p99_ms": round(1000 * float(np.percentile(latencies, 99)), 1),
        "errors": len(errors),
    }


def sequential_latency(url: str, bodies: list[bytes], *, headers: dict[str, str]) -> dict[str, Any]:
    latencies = []
    errors = 0
    with httpx.Client(timeout=60) as client:
        for body in bodies:
            started = time.perf_counter()
            response = client.post(url, content=body, headers=headers)
            latencies.append(time.perf_counter() - started)
            errors += response.status_code != 200
    return {
        "requests": len(bodies),
        "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
        "p90_ms": round(1000 * float(np.percentile(latencies, 90)), 2),
        "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2),
        "mean_ms": round(1000 * float(np.mean(latencies)), 2),
        "errors": errors,
    }


# --- the benchmark --------------------------------------------------------------------------------


def ensure_model(home: Path | None, n_leads: int) -> tuple[Path, dict[str, str]]:
    if home is not None and (home / "env.json").exists():
        return home, json.loads((home / "env.json").read_text())
    home = home or Path(tempfile.mkdtemp(prefix="leadscore-bench-"))
    print(f"building a {n_leads}-lead model under {home} ...", flush=True)
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "serving" / "modelkit.py"),
            "--home",
            str(home),
            "--leads",
            str(n_leads),
        ],
        check=True,
        capture_output=True,
        cwd=home,
    )
    return home, json.loads((home / "env.json").read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="LEADSCORE_HOME built by tests/serving/modelkit.py")
    parser.add_argument("--leads", type=int, default=5000, help="simulated leads if a model is built")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=48, help="batch requests per throughput phase")
    parser.add_argument("--singles", type=int, default=300, help="single-lead requests per latency phase")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    home, model_env = ensure_model(args.home, args.leads)
    leads: list[dict[str, Any]] = json.loads((home / "sample_leads.json").read_text())
    batches = [
        [leads[(i * args.batch + j) % len(leads)] for j in range(args.batch)] for i in range(args.batches)
    ]
    # distinct lead ids within a batch (the pool may be smaller than a batch)
    batches = [[dict(lead, lead_id=f"{lead['lead_id']}-{j}") for j, lead in enumerate(b)] for b in batches]
    singles = [leads[i % len(leads)] for i in range(args.singles)]
    env = {**os.environ, **model_env, "LEADSCORE_API_KEYS": API_KEY, "LEADSCORE_RELOAD_SECONDS": "0"}
    env.pop("LEADSCORE_MODEL_VERSION", None)
    logs = Path(tempfile.mkdtemp(prefix="leadscore-bench-logs-"))
    n_activities = float(np.mean([len(lead.get("activities") or []) for lead in leads]))
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "workload": {
            "batch_size": args.batch,
            "clients": args.clients,
            "batch_requests_per_phase": args.batches,
            "single_requests_per_phase": args.singles,
            "mean_activities_per_lead": round(n_activities, 1),
            "workers_per_server": 1,
        },
    }

    # --- ours -----------------------------------------------------------------------------------
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    command = [executable("bentoml"), "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    print("starting the BentoML service ...", flush=True)
    with running(command, env=env, ready_url=f"{url}/readyz", log=logs / "ours.log") as process:

        def count(payload: Any) -> int:
            return len(payload["results"])

        explain_bodies = [json.dumps({"leads": b, "explain": True, "top_k": 5}).encode() for b in batches]
        fast_bodies = [json.dumps({"leads": b, "explain": False}).encode() for b in batches]
        concurrent_batches(
            f"{url}/score", explain_bodies[:4], clients=2, headers=headers, check=count
        )  # warm
        rss_before = tree_rss_mb(process.pid)
        ours: dict[str, Any] = {
            "batch_explain": concurrent_batches(
                f"{url}/score", explain_bodies, clients=args.clients, headers=headers, check=count
            ),
            "batch_predict_only": concurrent_batches(
                f"{url}/score", fast_bodies, clients=args.clients, headers=headers, check=count
            ),
            "single_explain": sequential_latency(
                f"{url}/score", [json.dumps({"leads": [lead]}).encode() for lead in singles], headers=headers
            ),
            "single_predict_only": sequential_latency(
                f"{url}/score",
                [json.dumps({"leads": [lead], "explain": False}).encode() for lead in singles],
                headers=headers,
            ),
        }
        ours["rss_mb_after_warmup"] = rss_before
        ours["rss_mb_after_run"] = tree_rss_mb(process.pid)
    results["ours_bentoml"] = ours
    print(json.dumps(ours, indent=1), flush=True)

    # --- peer -----------------------------------------------------------------------------------
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    headers = {"Content-Type": "application/json"}
    command = [
        executable("mlflow"),
        "models",
        "serve",
        "-m",
        "models:/leadscore@champion",
        "--env-manager",
        "local",
        "-w",
        "1",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    print("starting mlflow models serve ...", flush=True)
    # mlflow execs `uvicorn` by name: put this interpreter's scripts first on PATH
    env = {**env, "PATH": os.pathsep.join([str(Path(executable("mlflow")).parent), env.get("PATH", "")])}
    with running(command, env=env, ready_url=f"{url}/ping", log=logs / "peer.log") as process:

        def count_peer(payload: Any) -> int:
            return len(payload["predictions"])

        def body(records: list[dict[str, Any]], params: dict[str, Any]) -> bytes:
            return json.dumps({"dataframe_records": records, "params": params}).encode()

        predict_bodies = [body(b, {"explain": False}) for b in batches]
        explain_bodies = [body(b, {"explain": True, "top_k": 5}) for b in batches]
        concurrent_batches(
            f"{url}/invocations", predict_bodies[:4], clients=2, headers=headers, check=count_peer
        )
        rss_before = tree_rss_mb(process.pid)
        peer: dict[str, Any] = {
            "batch_predict_only": concurrent_batches(
                f"{url}/invocations", predict_bodies, clients=args.clients, headers=headers, check=count_peer
            ),
            "batch_explain": concurrent_batches(
                f"{url}/invocations", explain_bodies, clients=args.clients, headers=headers, check=count_peer
            ),
            "single_predict_only": sequential_latency(
                f"{url}/invocations", [body([lead], {"explain": False}) for lead in singles], headers=headers
            ),
        }
        peer["rss_mb_after_warmup"] = rss_before
        peer["rss_mb_after_run"] = tree_rss_mb(process.pid)
    results["peer_mlflow_models_serve"] = peer
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_summary(results)
    print(f"\nwrote {args.out}")
    return 0


def print_summary(results: dict[str, Any]) -> None:
    ours, peer = results["ours_bentoml"], results["peer_mlflow_models_serve"]
    workload, machine = results["workload"], results["machine"]
    print(
        f"\n{workload['batch_size']}-lead batches, {workload['clients']} concurrent clients, 1 worker each, "
        f"{machine['cpus']} CPUs (load average at start {machine['load_average_at_start']})"
    )
    rows = [
        ("ours /score, reasons", ours["batch_explain"], ours["single_explain"]),
        ("ours /score, explain=false", ours["batch_predict_only"], ours["single_predict_only"]),
        ("peer /invocations, predict only", peer["batch_predict_only"], peer["single_predict_only"]),
        ("peer /invocations, with reasons", peer["batch_explain"], None),
    ]
    print(f"{'':34} {'leads/s':>9} {'batch p50':>10} {'single p50':>11} {'single p99':>11} {'errors':>7}")
    for name, batch, single in rows:
        p50 = f"{single['p50_ms']:.1f} ms" if single else "-"
        p99 = f"{single['p99_ms']:.1f} ms" if single else "-"
        errors = batch["errors"] + (single["errors"] if single else 0)
        print(
            f"{name:34} {batch['leads_per_s']:>9.0f} {batch['request_p50_ms']:>7.0f} ms {p50:>11} {p99:>11} "
            f"{errors:>7}"
        )
    print(
        f"server RSS (MB, after warm-up -> after run): ours {ours['rss_mb_after_warmup']} -> "
        f"{ours['rss_mb_after_run']}, peer {peer['rss_mb_after_warmup']} -> {peer['rss_mb_after_run']}"
    )


if __name__ == "__main__":
    sys.exit(main())
