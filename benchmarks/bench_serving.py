"""Serving benchmark: our BentoML service against ``mlflow models serve``, interleaved in one run.

Same machine, same registered model (``models:/leadscore@champion``), same leads, loopback only,
both servers up at once with one worker each, measured in alternating rounds so that load on the
shared machine hits both alike:

* **single lead with reasons**: ours ``POST /score`` (one lead, ``explain=true``) vs the same
  server's ``GET /livez`` (the framework's floor) vs the peer's ``/invocations`` with the pyfunc's
  reasons, and predict-only on both; p50/p90/p99;
* **in process**: one lead through the service's engine (fast path: features, TreeSHAP, reasons)
  vs the raw LightGBM booster's ``predict`` + ``pred_contrib`` on one encoded row;
* **100-lead batches with reasons**, 8 concurrent clients: leads per second (ours; the peer's for
  reference);
* **single lead while 8 clients send batches**: p50/p99 of one-lead requests under batch load.

Both servers get one large batch while warming up; ours then starts its batch process (large requests
are answered in a child process, ``LEADSCORE_BATCH_PROCESS``), and the run waits until it is up.

Ratios come first in the results (absolute times on a shared 2-core machine are noisy). Results go
to ``benchmarks/results/serving.json``. Bounded: a fixed number of requests per phase.

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


def latencies_of(
    client: httpx.Client, method: str, url: str, bodies: list[bytes], headers: dict[str, str]
) -> list[float]:
    times = []
    for body in bodies:
        started = time.perf_counter()
        response = client.request(method, url, content=body or None, headers=headers)
        times.append(time.perf_counter() - started)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
    return times


def summary(times: list[float]) -> dict[str, Any]:
    return {
        "requests": len(times),
        "p50_ms": round(1000 * float(np.percentile(times, 50)), 2),
        "p90_ms": round(1000 * float(np.percentile(times, 90)), 2),
        "p99_ms": round(1000 * float(np.percentile(times, 99)), 2),
        "mean_ms": round(1000 * float(np.mean(times)), 2),
    }


def in_process(home_env: dict[str, str], leads: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    """One lead through the engine (fast path) vs the raw booster on one encoded row."""
    os.environ.update(home_env)
    from leadscore.model import store
    from leadscore.serving import engine
    from leadscore.serving.schemas import RawLead, ScoreRequest
    from leadscore.serving.settings import ServingSettings

    version = store.champion_version(model_name="leadscore")
    model = store.load_scoring_model(model_name="leadscore", version=str(version))
    loaded = engine.LoadedModel(
        model,
        "leadscore",
        str(version),
        time.time(),
        fast=engine.FastScorer(model) if engine.applies_to(model) else None,
    )
    settings = ServingSettings(api_keys=(API_KEY,))
    requests = [ScoreRequest.model_validate({"leads": [lead], "explain": True}) for lead in leads]
    assert loaded.fast is not None, "the benchmark model is a native event model"
    rows = []
    for lead in leads[: min(len(leads), 50)]:
        one = engine.prepare_one(
            RawLead.model_validate(lead),
            request_as_of=None,
            now_us=int(engine.now_utc().value // 1000),
            clock_skew_seconds=300,
            full_validation=False,
        )
        rows.append(loaded.fast.encode([one.features()]))
    booster = model.booster
    for request in requests[:20]:
        engine.score_request(loaded, request, settings)
    model_times, raw_times = [], []
    for i in range(repeats):
        request = requests[i % len(requests)]
        row = rows[i % len(rows)]
        started = time.perf_counter()
        engine.score_request(loaded, request, settings)
        model_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        booster.predict(row, raw_score=True, num_threads=1)
        booster.predict(row, pred_contrib=True, num_threads=1)
        raw_times.append(time.perf_counter() - started)
    batch_times = []  # the same one lead through the batch (pandas) path, as before the fast path
    for i in range(repeats // 10):
        started = time.perf_counter()
        engine.score_request(loaded, requests[i % len(requests)], settings, fast=False)
        batch_times.append(time.perf_counter() - started)
    # 100-lead batches with reasons: the pandas batch path (the only one before this session) vs the
    # fast path for batches, interleaved in one run
    hundreds = [
        ScoreRequest.model_validate(
            {"leads": [dict(lead, lead_id=f"{lead['lead_id']}-{j}") for j, lead in enumerate(chunk)]}
        )
        for chunk in (leads[i : i + 100] for i in range(0, max(len(leads) - 99, 1), 100))
    ]
    pandas_path, fast_path = [], []
    for i in range(max(repeats // 50, 10)):
        request = hundreds[i % len(hundreds)]
        started = time.perf_counter()
        engine.score_request(loaded, request, settings, fast=False)
        pandas_path.append(time.perf_counter() - started)
        started = time.perf_counter()
        engine.score_request(loaded, request, settings)
        fast_path.append(time.perf_counter() - started)
    return {
        "model_call_one_lead": summary(model_times),
        "batch_path_one_lead": summary(batch_times),
        "raw_booster_predict_plus_pred_contrib_one_row": summary(raw_times),
        "batch_100_reasons_pandas_path": {
            **summary(pandas_path),
            "leads_per_s": round(100 / float(np.median(pandas_path))),
        },
        "batch_100_reasons_fast_path": {
            **summary(fast_path),
            "leads_per_s": round(100 / float(np.median(fast_path))),
        },
    }


def wait_for_batch_process(client: httpx.Client, url: str, timeout: float = 120.0) -> str:
    """Wait until ``/readyz`` says the batch process is up (or off); returns its state."""
    deadline = time.monotonic() + timeout
    while True:
        state = str(client.get(f"{url}/readyz").json().get("batch_process", "off"))
        if state in ("ready", "off") or time.monotonic() > deadline:
            return state
        time.sleep(0.2)


def background_batches(
    url: str, body: bytes, headers: dict[str, str], clients: int, stop: threading.Event
) -> list[int]:
    sent = [0]

    def loop() -> None:
        with httpx.Client(timeout=120) as client:
            while not stop.is_set():
                client.post(url, content=body, headers=headers)
                sent[0] += 1

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    return sent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="LEADSCORE_HOME built by tests/serving/modelkit.py")
    parser.add_argument("--leads", type=int, default=5000, help="simulated leads if a model is built")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batches", type=int, default=48, help="batch requests per throughput phase")
    parser.add_argument("--rounds", type=int, default=20, help="interleaved rounds of single requests")
    parser.add_argument("--per-round", type=int, default=25, help="single requests per server per round")
    parser.add_argument("--in-process", type=int, default=2000, help="in-process repetitions")
    parser.add_argument(
        "--under-load",
        type=int,
        default=1000,
        help="single requests while batches are sent (a p99 of 200 would rest on 2 requests)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    home, model_env = ensure_model(args.home, args.leads)
    leads: list[dict[str, Any]] = json.loads((home / "sample_leads.json").read_text())
    batches = [
        [leads[(i * args.batch + j) % len(leads)] for j in range(args.batch)] for i in range(args.batches)
    ]
    # distinct lead ids within a batch (the pool may be smaller than a batch)
    batches = [[dict(lead, lead_id=f"{lead['lead_id']}-{j}") for j, lead in enumerate(b)] for b in batches]
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
            "openmp_wait": {name: os.environ.get(name) for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},
        },
        "workload": {
            "batch_size": args.batch,
            "clients": args.clients,
            "batch_requests_per_phase": args.batches,
            "interleaved_rounds": args.rounds,
            "single_requests_per_server_per_round": args.per_round,
            "mean_activities_per_lead": round(n_activities, 1),
            "workers_per_server": 1,
            "command": "python benchmarks/bench_serving.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
        },
    }

    ours_port, peer_port = free_port(), free_port()
    ours_url, peer_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{peer_port}"
    ours_command = [executable("bentoml"), "serve", SERVICE, "--host", "127.0.0.1", "--port", str(ours_port)]
    peer_command = [
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
        str(peer_port),
    ]
    # mlflow execs `uvicorn` by name: put this interpreter's scripts first on PATH
    peer_env = {**env, "PATH": os.pathsep.join([str(Path(executable("mlflow")).parent), env.get("PATH", "")])}
    ours_headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    peer_headers = {"Content-Type": "application/json"}

    def peer_body(records: list[dict[str, Any]], params: dict[str, Any]) -> bytes:
        return json.dumps({"dataframe_records": records, "params": params}).encode()

    print("starting both servers ...", flush=True)
    with (
        running(ours_command, env=env, ready_url=f"{ours_url}/readyz", log=logs / "ours.log") as ours_process,
        running(
            peer_command, env=peer_env, ready_url=f"{peer_url}/ping", log=logs / "peer.log"
        ) as peer_process,
    ):
        pool = leads[:200]
        ours_single = [json.dumps({"leads": [lead], "explain": True, "top_k": 5}).encode() for lead in pool]
        ours_single_fast = [json.dumps({"leads": [lead], "explain": False}).encode() for lead in pool]
        peer_single = [peer_body([lead], {"explain": True, "top_k": 5}) for lead in pool]
        peer_single_fast = [peer_body([lead], {"explain": False}) for lead in pool]
        phases: dict[str, list[float]] = {
            "ours_livez": [],
            "ours_single_reasons": [],
            "ours_single_predict_only": [],
            "peer_single_reasons": [],
            "peer_single_predict_only": [],
        }
        with httpx.Client(timeout=60) as ours_client, httpx.Client(timeout=60) as peer_client:
            for _ in range(2):  # warm both
                latencies_of(ours_client, "POST", f"{ours_url}/score", ours_single[:20], ours_headers)
                latencies_of(peer_client, "POST", f"{peer_url}/invocations", peer_single[:10], peer_headers)
            # one large batch each: ours then starts its batch process (wait for it, as a service
            # that has seen one batch would have it); its memory counts in the RSS below
            warm_batch = json.dumps({"leads": batches[0], "explain": True, "top_k": 5}).encode()
            ours_client.post(f"{ours_url}/score", content=warm_batch, headers=ours_headers).raise_for_status()
            peer_warm = peer_body(batches[0], {"explain": True})
            peer_answer = peer_client.post(f"{peer_url}/invocations", content=peer_warm, headers=peer_headers)
            peer_answer.raise_for_status()
            batch_process = wait_for_batch_process(ours_client, ours_url)
            rss_before = {"ours": tree_rss_mb(ours_process.pid), "peer": tree_rss_mb(peer_process.pid)}
            k = args.per_round
            for r in range(args.rounds):
                window = slice((r * k) % len(pool), (r * k) % len(pool) + k)
                phases["ours_livez"] += latencies_of(ours_client, "GET", f"{ours_url}/livez", [b""] * k, {})
                phases["ours_single_reasons"] += latencies_of(
                    ours_client, "POST", f"{ours_url}/score", ours_single[window], ours_headers
                )
                phases["peer_single_reasons"] += latencies_of(
                    peer_client, "POST", f"{peer_url}/invocations", peer_single[window], peer_headers
                )
                phases["ours_single_predict_only"] += latencies_of(
                    ours_client, "POST", f"{ours_url}/score", ours_single_fast[window], ours_headers
                )
                phases["peer_single_predict_only"] += latencies_of(
                    peer_client, "POST", f"{peer_url}/invocations", peer_single_fast[window], peer_headers
                )
        singles = {name: summary(times) for name, times in phases.items()}

        def count(payload: Any) -> int:
            return len(payload["results"])

        def count_peer(payload: Any) -> int:
            return len(payload["predictions"])

        explain_bodies = [json.dumps({"leads": b, "explain": True, "top_k": 5}).encode() for b in batches]
        ours_batch = concurrent_batches(
            f"{ours_url}/score", explain_bodies, clients=args.clients, headers=ours_headers, check=count
        )
        peer_batch = concurrent_batches(
            f"{peer_url}/invocations",
            [peer_body(b, {"explain": True, "top_k": 5}) for b in batches[: max(8, args.batches // 4)]],
            clients=args.clients,
            headers=peer_headers,
            check=count_peer,
        )

        # single leads while 8 clients send 100-lead batches with reasons
        stop = threading.Event()
        sent = background_batches(f"{ours_url}/score", explain_bodies[0], ours_headers, args.clients, stop)
        time.sleep(1.0)
        with httpx.Client(timeout=60) as client:
            bodies = [ours_single[i % len(ours_single)] for i in range(args.under_load)]
            under_load = latencies_of(client, "POST", f"{ours_url}/score", bodies, ours_headers)
        stop.set()
        time.sleep(0.5)
        rss_after = {"ours": tree_rss_mb(ours_process.pid), "peer": tree_rss_mb(peer_process.pid)}

    print("in-process timings ...", flush=True)
    process_times = in_process(model_env, leads[:200], args.in_process)

    livez, single = singles["ours_livez"], singles["ours_single_reasons"]
    peer_single_p50 = singles["peer_single_reasons"]["p50_ms"]
    loaded_single = summary(under_load)
    loaded_single["batches_sent_meanwhile"] = sent[0]
    results["ratios"] = {
        "single_reasons_p50_over_livez_p50": round(single["p50_ms"] / livez["p50_ms"], 2),
        "single_reasons_p50_over_peer_single_reasons_p50": round(single["p50_ms"] / peer_single_p50, 3),
        "single_reasons_p50_over_peer_single_predict_only_p50": round(
            single["p50_ms"] / singles["peer_single_predict_only"]["p50_ms"], 3
        ),
        "in_process_one_lead_over_raw_booster_p50": round(
            process_times["model_call_one_lead"]["p50_ms"]
            / process_times["raw_booster_predict_plus_pred_contrib_one_row"]["p50_ms"],
            2,
        ),
        "in_process_batch_100_fast_over_pandas_path_leads_per_s": round(
            process_times["batch_100_reasons_fast_path"]["leads_per_s"]
            / process_times["batch_100_reasons_pandas_path"]["leads_per_s"],
            2,
        ),
        "batch_reasons_leads_per_s_over_peer": round(
            ours_batch["leads_per_s"] / max(peer_batch["leads_per_s"], 1e-9), 1
        ),
    }
    results["targets"] = {
        "single_reasons_p50_le_3x_livez": results["ratios"]["single_reasons_p50_over_livez_p50"] <= 3,
        "single_reasons_p50_le_0.1x_peer": results["ratios"][
            "single_reasons_p50_over_peer_single_reasons_p50"
        ]
        <= 0.1,
        "in_process_le_10x_raw_booster": results["ratios"]["in_process_one_lead_over_raw_booster_p50"] <= 10,
        "batch_reasons_ge_1500_leads_per_s": ours_batch["leads_per_s"] >= 1500,
        "single_p99_under_batch_load_le_25ms": loaded_single["p99_ms"] <= 25,
    }
    results["single_lead"] = singles
    results["single_lead_under_batch_load"] = loaded_single
    results["in_process"] = process_times
    results["batch_reasons"] = {"ours": ours_batch, "peer": peer_batch}
    results["rss_mb"] = {"after_warmup": rss_before, "after_run": rss_after}
    results["workload"]["batch_process"] = batch_process
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: results[k] for k in ("ratios", "targets")}, indent=1))
    print_summary(results)
    print(f"\nwrote {args.out}")
    return 0


def print_summary(results: dict[str, Any]) -> None:
    single, load = results["single_lead"], results["single_lead_under_batch_load"]
    print(f"\n{'':38} {'p50 ms':>8} {'p99 ms':>8}")
    for name, row in single.items():
        print(f"{name:38} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f}")
    print(f"{'ours single, 8 clients sending batches':38} {load['p50_ms']:>8.2f} {load['p99_ms']:>8.2f}")
    batch = results["batch_reasons"]
    print(
        f"100-lead batches with reasons: ours {batch['ours']['leads_per_s']:.0f} leads/s, "
        f"peer {batch['peer']['leads_per_s']:.0f}"
    )
    process = results["in_process"]
    print(
        f"in process, one lead: {process['model_call_one_lead']['p50_ms']:.3f} ms vs raw booster "
        f"{process['raw_booster_predict_plus_pred_contrib_one_row']['p50_ms']:.3f} ms "
        f"(batch path {process['batch_path_one_lead']['p50_ms']:.2f} ms)"
    )


if __name__ == "__main__":
    sys.exit(main())
