"""Spike: DuckLake (PostgreSQL catalog + Parquet data files) as the table format of a
cloud memory store served by stateless Flight server replicas over shared storage.

The design under test is append-only: one table

    records(tenant VARCHAR, id VARCHAR, hlc BIGINT, origin VARCHAR, deleted BOOLEAN,
            payload VARCHAR)

and the current state of a tenant is, per id, the row with the largest (hlc, origin),
dropped when ``deleted``. Every replica is a separate process with its own DuckDB and
its own ATTACH of the same catalog, as replicas on different hosts would be.

Each case prints ONE JSON line on stdout ({"bench": "spike", "backend": "ducklake",
"case": ..., figures..., "ok": true/false}); progress goes to stderr.

Cases (the same invariants as bench/spikes/spike_lance.py):

1. ``concurrent_appends``: 3 and 4 writer processes append batches of 1 and 16 rows
   per commit to the same tenant for ``--seconds`` each (and once more 3 x 1 row with
   tuned retry settings). Every writer logs each commit it got an acknowledgement for
   (the statement returned). Afterwards: every acknowledged row present exactly once
   (lost = duplicated = 0), the content hash of the acknowledged rows equals the hash
   of the table. Reports commits/s, commits per process (fairness), commit latency
   p50/p99/max and commit conflicts. DuckLake retries a conflicting commit internally
   (settings ``ducklake_max_retry_count`` 10, ``ducklake_retry_wait_ms`` 100,
   ``ducklake_retry_backoff`` 1.5); an internal retry is invisible to the caller, so
   conflicts are counted from the catalog's own log: every lost race for the next
   snapshot id is a violation of ducklake_snapshot's primary key logged by PostgreSQL.
   Errors that reach the caller (retries exhausted) are counted apart and retried by
   the writer with the same rows (at-least-once, as a server would).
2. ``visibility``: process A commits single rows at random intervals; process B
   (already attached) polls "latest snapshot id" and, when it changed, reads the new
   row. Reports the lag from A's acknowledgement to B seeing the row, the latency of
   the snapshot-id check and of the read, and (two connections in this process)
   whether an autocommit query reads a fresh snapshot and whether an open
   transaction keeps its snapshot.
3. ``compaction_during_work``: two writers write new versions and tombstones of 400
   ids (16-row and 1-row commits), a reader repeatedly computes the current-state hash
   at the latest snapshot (``AT (VERSION => s)``) and re-reads earlier snapshots, and
   a maintenance process loops flush_inlined_data, merge_adjacent_files,
   expire_snapshots and cleanup_old_files (2 s grace). Every (snapshot, hash) any
   reader saw must equal the hash computed from the writers' acknowledged commits up
   to that snapshot; a read of an expired snapshot may fail but must never return a
   wrong state. Reports data files before/after a final maintenance pass.
4. ``kill9``: a writer process is SIGKILLed at a random moment (~20 times) while it
   commits 1- and 16-row batches; each acknowledgement is written to a file and
   flushed before the next commit. Every acknowledged row must be present exactly
   once, and the table must still be readable and writable; orphaned data files
   (written, never committed) are counted.
5. ``concurrent_deletes``: documents the earlier finding that concurrent DELETEs gave
   duplicate rows. 3 processes (a) delete disjoint ids of a seeded 16-row-per-file
   table, one id per commit (a conflict puts the id back in the queue), and (b) churn
   60 shared ids (30 of them new): DELETE ... IN (k ids) + INSERT k rows in one
   transaction, k = 1..24, so deletes straddle the inlining limit and some match
   nothing. Afterwards no id may appear twice, no acknowledged delete may be undone,
   and every churned id has exactly one row. (c) Two known races replayed step by step
   with two replicas: a 1-row (inlined tombstone) and a 30-row (Parquet delete file)
   DELETE of the same row (ducklake issues #1215/#1084), and two "DELETE matching
   nothing + INSERT" upserts of one new key (#1393); their fixes are not in the
   extension that ships for DuckDB 1.5.5.
6. ``small_files``: 1,000 single-row commits, once with DuckLake's default data
   inlining (rows of small inserts live in the catalog, not in files) and once with
   inlining off; data files, catalog rows and current-state read time before and
   after maintenance (flush_inlined_data, merge_adjacent_files, expire_snapshots,
   cleanup_old_files).

Setup (offline; DuckDB never downloads an extension here): DuckDB 1.5.5 and the
ducklake, postgres_scanner (and for S3 httpfs) extensions from PyPI, each loaded by
absolute path
(``<site-packages>/duckdb_extension_<name>/extensions/v1.5.5/<name>.duckdb_extension``)
with autoinstall/autoload off and a temporary extension_directory (the helper package
duckdb-extensions is not needed: its import_extension() only INSTALLs that same file
into ~/.duckdb/extensions). A venv of its own, in a folder you name (``bench/spikes/README.md``):

    python3 -m venv "$VENV"
    "$VENV"/bin/pip install duckdb==1.5.5 duckdb-extension-ducklake==1.5.5 \\
        duckdb-extension-postgres-scanner==1.5.5 duckdb-extension-httpfs==1.5.5 \\
        psycopg2-binary pyarrow

The script starts its own PostgreSQL 15 (initdb/pg_ctl on PATH) in a temporary
directory on 127.0.0.1 and a free port, and stops it at the end; as root it runs the
server inside a user namespace (``unshare --user --map-user=<postgres uid>``) because
PostgreSQL refuses to run as root. Data files go to a temporary directory, or
``--data DIR``, or ``--data s3://bucket/prefix`` with ``--s3-endpoint host:port``
(or ``--start-moto`` to start a moto server on 127.0.0.1: ``moto_server`` beside this
interpreter unless ``--moto-bin`` names another; ``pip install 'moto[server]'`` into the venv).

    "$VENV"/bin/python bench/spikes/spike_ducklake.py [--seconds 10] [--data DIR|s3://...]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any

BACKEND = "ducklake"
CASES = (
    "concurrent_appends",
    "visibility",
    "compaction_during_work",
    "kill9",
    "concurrent_deletes",
    "small_files",
)
COLUMNS = "tenant VARCHAR, id VARCHAR, hlc BIGINT, origin VARCHAR, deleted BOOLEAN, payload VARCHAR"
CONFLICT_LOG = 'violates unique constraint "ducklake_snapshot_pkey"'


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000.0, 3)


def lat(values: list[float], prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}_p50_ms": ms(pct(values, 50)),
        f"{prefix}_p99_ms": ms(pct(values, 99)),
        f"{prefix}_max_ms": ms(max(values) if values else None),
    }


# --- DuckDB + DuckLake --------------------------------------------------------------


def ext_path(name: str) -> str:
    """The extension binary shipped inside the PyPI package duckdb-extension-<name>."""
    import duckdb

    module = importlib.import_module(f"duckdb_extension_{name}")
    path = (
        Path(module.__file__).parent
        / "extensions"
        / f"v{duckdb.__version__}"
        / f"{name}.duckdb_extension"
    )
    if not path.exists():
        raise SystemExit(
            f"{path} missing: pip install duckdb-extension-{name}=={duckdb.__version__}"
        )
    return str(path)


def lake_connect(cfg: dict[str, Any], settings: dict[str, Any] | None = None):
    """A fresh DuckDB with the lake attached as ``lake``; nothing is downloaded."""
    import duckdb

    con = duckdb.connect(
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "extension_directory": cfg["ext_dir"],
        }
    )
    names = ["postgres_scanner", "ducklake"] + (["httpfs"] if cfg.get("s3") else [])
    for name in names:
        con.execute(f"LOAD '{ext_path(name)}'")
    if cfg.get("s3"):
        s3 = cfg["s3"]
        con.execute(
            f"CREATE SECRET s3local (TYPE s3, KEY_ID '{s3['key']}', SECRET '{s3['secret']}', "
            f"ENDPOINT '{s3['endpoint']}', URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')"
        )
    for key, value in (settings or {}).items():
        con.execute(f"SET {key} = {value}")
    options = f"DATA_PATH '{cfg['data']}'"
    con.execute(f"ATTACH 'ducklake:postgres:{cfg['dsn']}' AS lake ({options})")
    return con


def state_sql(at: int | None = None) -> str:
    """Count and md5 of a tenant's current state (max (hlc, origin) per id, not deleted)."""
    at_clause = f"AT (VERSION => {int(at)})" if at is not None else ""
    return (
        "SELECT count(*), coalesce(md5(string_agg("
        "id || '|' || hlc || '|' || origin || '|' || payload, "
        "chr(10) ORDER BY id)), md5('')) FROM (SELECT id, hlc, origin, deleted, payload "
        f"FROM lake.records {at_clause} WHERE tenant = ? "
        "QUALIFY row_number() OVER (PARTITION BY id ORDER BY hlc DESC, origin DESC) = 1) "
        "WHERE NOT deleted"
    )


def state_py(rows) -> tuple[int, str]:
    """The same count and md5 computed in Python from (id, hlc, origin, deleted, payload)."""
    best: dict[str, tuple] = {}
    for r in rows:
        cur = best.get(r[0])
        if cur is None or (r[1], r[2]) > (cur[1], cur[2]):
            best[r[0]] = tuple(r)
    live = sorted((r for r in best.values() if not r[3]), key=lambda r: r[0])
    text = "\n".join(f"{r[0]}|{r[1]}|{r[2]}|{r[4]}" for r in live)
    return len(live), hashlib.md5(text.encode()).hexdigest()


def insert_rows(con, rows: list[tuple]) -> None:
    ph = ",".join(["(?,?,?,?,?,?)"] * len(rows))
    con.execute(f"INSERT INTO lake.records VALUES {ph}", [v for r in rows for v in r])


def scalar(con, sql: str, params: list | None = None):
    return con.execute(sql, params or []).fetchone()[0]


def snapshot_id(con) -> int:
    return scalar(con, "SELECT id FROM ducklake_current_snapshot('lake')")


def file_count(con) -> int:
    return scalar(con, "SELECT count(*) FROM ducklake_list_files('lake', 'records')")


def maintenance(con, grace_s: float | None) -> dict[str, int]:
    """One pass of everything DuckLake 1.5.5 offers to compact and clean up.

    Pitfall: read their result with fetchall() (or an Arrow fetch). With the Python client's
    fetchone() they run and report their work, and then nothing of it is ever committed:
    no error, no new snapshot.
    """
    older = "now()" if grace_s is None else f"now() - INTERVAL '{grace_s} seconds'"
    rows = con.execute("CALL ducklake_flush_inlined_data('lake')").fetchall()
    out = {"rows_flushed": sum(r[2] for r in rows)}
    rows = con.execute("CALL ducklake_merge_adjacent_files('lake')").fetchall()
    out["files_merged"], out["files_created"] = sum(r[2] for r in rows), sum(r[3] for r in rows)
    cur = con.execute(f"CALL ducklake_expire_snapshots('lake', older_than => {older})")
    out["snapshots_expired"] = cur.to_arrow_table().num_rows  # timestamps: fetchall() wants pytz
    cleanup = "cleanup_all => true" if grace_s is None else f"older_than => {older}"
    out["files_deleted"] = len(
        con.execute(f"CALL ducklake_cleanup_old_files('lake', {cleanup})").fetchall()
    )
    return out


def payload() -> str:
    return secrets.token_hex(32)


class Hlc:
    """Strictly increasing int per process (ns wall clock)."""

    def __init__(self) -> None:
        self.last = 0

    def next(self) -> int:
        self.last = max(self.last + 1, time.time_ns())
        return self.last


# --- workers (each a separate process) -----------------------------------------------


def worker_main(spec: dict[str, Any]) -> None:
    cfg = spec["cfg"]
    con = lake_connect(cfg, spec.get("settings"))
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return
    result = ROLES[spec["role"]](con, spec)
    print(json.dumps(result), flush=True)


def role_append(con, spec) -> dict[str, Any]:
    """Append ``batch``-row commits until the deadline; log each acknowledged commit."""
    name, tenant, batch = spec["name"], spec["tenant"], spec["batch"]
    deadline = time.monotonic() + spec["seconds"]
    hlc = Hlc()
    seq, lats, errors, samples = 0, [], 0, []
    id_space = spec.get("id_space")
    del_p = spec.get("delete_p", 0.0)
    with open(spec["ack_path"], "w") as ack:
        while time.monotonic() < deadline:
            rows = []
            for _ in range(batch if not spec.get("mixed") else random.choice((1, 16))):
                rid = (
                    f"{name}-{seq:08d}"
                    if id_space is None
                    else f"k{random.randrange(id_space):05d}"
                )
                seq += 1
                rows.append((tenant, rid, hlc.next(), name, random.random() < del_p, payload()))
            attempts = 0
            while True:
                attempts += 1
                t0 = time.perf_counter()
                try:
                    insert_rows(con, rows)
                    snap = snapshot_id_of_commit(con) if spec.get("log_snapshot") else None
                    break
                except Exception as exc:  # retries exhausted inside DuckLake: retry the same rows
                    errors += 1
                    if len(samples) < 3:
                        samples.append(str(exc)[:300])
                    if time.monotonic() > deadline + 30:
                        raise
                    time.sleep(random.uniform(0.005, 0.05))
            lats.append(time.perf_counter() - t0)
            ack.write(json.dumps({"snap": snap, "attempts": attempts, "rows": rows}) + "\n")
            ack.flush()
    return {
        "name": name,
        "commits": len(lats),
        "lat": lats,
        "errors": errors,
        "error_samples": samples,
    }


def snapshot_id_of_commit(con) -> int:
    return scalar(con, "SELECT id FROM ducklake_last_committed_snapshot('lake')")


def role_vis_writer(con, spec) -> dict[str, Any]:
    acks = []
    for k in range(1, spec["n"] + 1):
        time.sleep(random.uniform(0.03, 0.12))
        insert_rows(con, [("vis", f"v{k:06d}", k, "A", False, payload())])
        acks.append((k, time.monotonic()))
    return {"acks": acks}


def role_vis_reader(con, spec) -> dict[str, Any]:
    """Poll the latest snapshot id; when it moved, read the newest row."""
    deadline = time.monotonic() + spec["seconds"]
    seen, snap_lat, read_lat = [], [], []
    last_snap, last_k = -1, 0
    while time.monotonic() < deadline and last_k < spec["n"]:
        t0 = time.perf_counter()
        snap = snapshot_id(con)
        snap_lat.append(time.perf_counter() - t0)
        if snap != last_snap:
            last_snap = snap
            t0 = time.perf_counter()
            k = scalar(con, "SELECT coalesce(max(hlc), 0) FROM lake.records WHERE tenant = 'vis'")
            now = time.monotonic()
            read_lat.append(time.perf_counter() - t0)
            if k > last_k:
                seen.append((k, now))
                last_k = k
    return {"seen": seen, "snap_lat": snap_lat, "read_lat": read_lat}


def role_state_reader(con, spec) -> dict[str, Any]:
    """Hash the current state at the latest snapshot; every 4th read re-reads an older one."""
    deadline = time.monotonic() + spec["seconds"]
    obs, errors, samples, i = [], {"latest": 0, "old": 0}, [], 0
    while time.monotonic() < deadline:
        i += 1
        kind = "latest"
        try:
            if i % 4 == 0 and obs:
                s = random.choice(obs)[0]
                kind = "old"
            else:
                s = snapshot_id(con)
                kind = "latest"
            n, h = con.execute(state_sql(s), [spec["tenant"]]).fetchone()
            obs.append((s, n, h, kind))
        except Exception as exc:
            errors[kind] += 1
            if len(samples) < 3 or (kind == "latest" and errors["latest"] <= 3):
                samples.append(f"{kind}: {str(exc)[:300]}")
    return {"obs": obs, "errors": errors, "error_samples": samples}


def role_compactor(con, spec) -> dict[str, Any]:
    deadline = time.monotonic() + spec["seconds"]
    passes, errors, samples = [], 0, []
    while time.monotonic() < deadline:
        try:
            before = file_count(con)
            t0 = time.perf_counter()
            out = maintenance(con, spec["grace_s"])
            out["s"] = round(time.perf_counter() - t0, 3)
            out["files_before"], out["files_after"] = before, file_count(con)
            passes.append(out)
        except Exception as exc:
            errors += 1
            if len(samples) < 3:
                samples.append(str(exc)[:300])
        time.sleep(spec.get("pause", 0.5))
    return {"passes": passes, "errors": errors, "error_samples": samples}


def role_kill_writer(con, spec) -> dict[str, Any]:
    """Commit until killed; each acknowledged commit is flushed to the ack file first."""
    hlc = Hlc()
    with open(spec["ack_path"], "w") as ack:
        for seq in range(10**9):
            rows = [
                (
                    "kill",
                    f"{spec['name']}-{seq:06d}-{j:02d}",
                    hlc.next(),
                    spec["name"],
                    False,
                    payload(),
                )
                for j in range(random.choice((1, 16)))
            ]
            insert_rows(con, rows)
            ack.write(json.dumps(rows) + "\n")
            ack.flush()
    return {}


def role_deleter(con, spec) -> dict[str, Any]:
    """``delete``: delete own ids, one per commit (a conflict puts the id back in the queue).
    ``churn``: upsert k = 1..24 random shared ids in one transaction (DELETE ... IN + INSERT),
    so deletes straddle the inlining limit (<= 10 rows: tombstones inlined in the catalog,
    > 10: a Parquet delete file) and some DELETEs match nothing (new ids)."""
    deadline = time.monotonic() + spec["seconds"]
    acks, errors, samples, lats = [], 0, [], []
    hlc = Hlc()
    queue = list(spec["ids"])
    random.shuffle(queue)
    while time.monotonic() < deadline and (spec["mode"] == "churn" or queue):
        t0 = time.perf_counter()
        if spec["mode"] == "delete":
            rid = queue.pop(0)
        else:
            ids = random.sample(spec["ids"], random.randint(1, 24))
            rows = [("ups", rid, hlc.next(), spec["name"], False, payload()) for rid in ids]
        try:
            if spec["mode"] == "delete":
                con.execute("DELETE FROM lake.records WHERE tenant = 'del' AND id = ?", [rid])
                acks.append(rid)
            else:
                con.execute("BEGIN")
                con.execute(
                    "DELETE FROM lake.records WHERE tenant = 'ups' AND id IN "
                    f"({','.join('?' * len(ids))})",
                    ids,
                )
                insert_rows(con, rows)
                con.execute("COMMIT")
                acks.extend(rows)
            lats.append(time.perf_counter() - t0)
        except Exception as exc:
            errors += 1
            if len(samples) < 3:
                samples.append(str(exc)[:300])
            with contextlib.suppress(Exception):
                con.execute("ROLLBACK")
            if spec["mode"] == "delete":
                queue.append(rid)
    return {"acks": acks, "errors": errors, "error_samples": samples, "lat": lats}


ROLES = {
    "append": role_append,
    "vis_writer": role_vis_writer,
    "vis_reader": role_vis_reader,
    "state_reader": role_state_reader,
    "compactor": role_compactor,
    "kill_writer": role_kill_writer,
    "deleter": role_deleter,
}


# --- the harness ---------------------------------------------------------------------


class Postgres:
    """A throw-away PostgreSQL 15 on 127.0.0.1 (catalog server)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "pg"
        self.log = root / "pg.log"
        self.sock = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.pre: list[str] = []
        if os.geteuid() == 0:  # postgres refuses root: map us to the postgres user
            pw = pwd.getpwnam("postgres")
            self.pre = ["unshare", "--user", f"--map-user={pw.pw_uid}", f"--map-group={pw.pw_gid}"]

    def start(self) -> None:
        subprocess.run(
            self.pre
            + ["initdb", "-D", str(self.dir), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
            check=True,
            capture_output=True,
        )
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.sock} "
            "-c max_connections=200 -c fsync=on"
        )
        subprocess.run(
            self.pre
            + ["pg_ctl", "-D", str(self.dir), "-w", "-l", str(self.log), "-o", opts, "start"],
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            self.pre + ["pg_ctl", "-D", str(self.dir), "-m", "fast", "-w", "stop"],
            capture_output=True,
        )

    def connect(self, db: str = "postgres"):
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=db)
        con.autocommit = True
        return con

    def query(self, sql: str, db: str = "postgres") -> list[tuple]:
        con = self.connect(db)
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall() if cur.description else []
        finally:
            con.close()

    def create_db(self, name: str) -> str:
        self.query(f"CREATE DATABASE {name}")
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={name}"

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def log_count(self, since: int, needle: str) -> int:
        with open(self.log, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace").count(needle)

    def version(self) -> str:
        return self.query("SHOW server_version")[0][0]


class Harness:
    def __init__(self, args) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="spike-ducklake-"))
        self.pg = Postgres(self.root)
        self.procs: list[subprocess.Popen] = []
        self.moto: subprocess.Popen | None = None
        self.s3 = None
        if args.data.startswith("s3://"):
            endpoint = args.s3_endpoint
            if args.start_moto:
                endpoint = self.start_moto()
            if not endpoint:
                raise SystemExit("--data s3://... needs --s3-endpoint host:port or --start-moto")
            self.s3 = {"endpoint": endpoint, "key": args.s3_key, "secret": args.s3_secret}
            self.make_bucket(args.data)

    def start_moto(self) -> str:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.moto = subprocess.Popen(
            [self.args.moto_bin, "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        return f"127.0.0.1:{port}"

    def make_bucket(self, url: str) -> None:
        bucket = url[5:].split("/", 1)[0]
        req = urllib.request.Request(f"http://{self.s3['endpoint']}/{bucket}", method="PUT")
        try:
            urllib.request.urlopen(req, timeout=5)
        except Exception as exc:  # already there, or a server that wants signed requests
            log("bucket create:", exc)

    def data_path(self, case: str) -> str:
        if self.s3:
            return self.args.data.rstrip("/") + f"/{self.run_id}/{case}/"
        base = Path(self.args.data) if self.args.data else self.root / "data"
        path = base / self.run_id / case
        path.mkdir(parents=True, exist_ok=True)
        return str(path) + "/"

    def cfg(self, case: str) -> dict[str, Any]:
        return {
            "dsn": self.pg.create_db(case),
            "data": self.data_path(case),
            "s3": self.s3,
            "ext_dir": str(self.root / "ext"),
        }

    def disk_files(self, cfg, con) -> int:
        """Parquet files under the case's data path (live, awaiting deletion and orphaned)."""
        if self.s3:
            return scalar(con, "SELECT count(*) FROM glob(?)", [cfg["data"] + "**/*.parquet"])
        return sum(1 for _, _, fs in os.walk(cfg["data"]) for f in fs if f.endswith(".parquet"))

    def spawn(self, spec: dict[str, Any]) -> subprocess.Popen:
        p = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.procs.append(p)
        return p

    def run_workers(self, specs: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
        t0 = time.monotonic()
        procs = [self.spawn(s) for s in specs]
        for p in procs:
            line = p.stdout.readline().strip()
            if line != "READY":
                raise RuntimeError(f"worker did not start: {line!r}")
        log(f"  {len(procs)} workers ready in {time.monotonic() - t0:.1f} s")
        for p in procs:
            p.stdin.write("GO\n")
            p.stdin.flush()
        out = []
        for p in procs:
            try:
                text, _ = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                text, _ = p.communicate()
            lines = [x for x in text.splitlines() if x.strip()]
            out.append(
                json.loads(lines[-1])
                if lines and p.returncode == 0
                else {"failed": True, "rc": p.returncode}
            )
        return out

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.pg.stop()
        if self.moto is not None:
            self.moto.terminate()
            self.moto.wait()
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def emit(self, case: str, ok: bool, **fig: Any) -> None:
        line = {
            "bench": "spike",
            "backend": BACKEND,
            "case": case,
            **fig,
            "ok": bool(ok),
            "params": {
                "seconds": self.args.seconds,
                "storage": "s3" if self.s3 else "local",
                "s3_server": ("moto" if self.moto else "external") if self.s3 else None,
                "catalog": "postgres",
                "kills": self.args.kills,
                "small_commits": self.args.small_commits,
            },
            "versions": self.versions,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }
        print(json.dumps(line), flush=True)


def read_acks(path: Path) -> list[dict]:
    acks = []
    with open(path) as f:
        for line in f:
            if line.endswith("\n"):
                acks.append(json.loads(line))
    return acks


def table_rows(con, tenant: str) -> list[tuple]:
    return con.execute(
        "SELECT id, hlc, origin, deleted, payload FROM lake.records WHERE tenant = ?", [tenant]
    ).fetchall()


def multiset_check(expected: list[tuple], present: list[tuple]) -> dict[str, Any]:
    """Lost / duplicated / unacknowledged rows and the content hashes of both sides."""
    from collections import Counter

    exp, got = Counter(map(tuple, expected)), Counter(map(tuple, present))
    lost = sum((exp - got).values())
    dup = sum(c - 1 for c in got.values() if c > 1)
    extra = sum(1 for k in got if k not in exp)

    def digest(rows):
        return hashlib.md5(
            "\n".join(sorted("|".join(map(str, r)) for r in rows)).encode()
        ).hexdigest()

    return {
        "rows_acked": sum(exp.values()),
        "rows_present": sum(got.values()),
        "lost": lost,
        "duplicated": dup,
        "unacked_present": extra,
        "hash_match": digest(exp.elements()) == digest([k for k in got if k in exp]),
    }


# --- cases ---------------------------------------------------------------------------


def case_concurrent_appends(h: Harness) -> None:
    default_retry = {
        "ducklake_max_retry_count": 10,
        "ducklake_retry_wait_ms": 100,
        "ducklake_retry_backoff": 1.5,
    }
    tuned_retry = {
        "ducklake_max_retry_count": 100,
        "ducklake_retry_wait_ms": 5,
        "ducklake_retry_backoff": 1.2,
    }
    runs = [
        (3, 1, default_retry),
        (3, 16, default_retry),
        (4, 1, default_retry),
        (4, 16, default_retry),
        (3, 1, tuned_retry),
    ]
    for procs, batch, retry in runs:
        name = f"appends_p{procs}_b{batch}" + ("_tuned" if retry is tuned_retry else "")
        cfg = h.cfg(name)
        con = lake_connect(cfg)
        con.execute(f"CREATE TABLE lake.records({COLUMNS})")
        off = h.pg.log_offset()
        specs = [
            {
                "role": "append",
                "cfg": cfg,
                "name": f"w{i}",
                "tenant": "t1",
                "batch": batch,
                "settings": retry,
                "seconds": h.args.seconds,
                "ack_path": str(h.root / f"{name}-w{i}.ack"),
            }
            for i in range(procs)
        ]
        t0 = time.monotonic()
        res = h.run_workers(specs, timeout=h.args.seconds + 120)
        wall = time.monotonic() - t0
        acked = [
            tuple(r[1:]) for s in specs for a in read_acks(Path(s["ack_path"])) for r in a["rows"]
        ]
        present = table_rows(con, "t1")
        chk = multiset_check(acked, present)
        commits = sum(r.get("commits", 0) for r in res)
        lats = [x for r in res for x in r.get("lat", [])]
        errors = sum(r.get("errors", 0) for r in res)
        conflicts = h.pg.log_count(off, CONFLICT_LOG)
        con.close()
        ok = (
            not any(r.get("failed") for r in res)
            and chk["lost"] == 0
            and chk["duplicated"] == 0
            and chk["hash_match"]
        )
        h.emit(
            "concurrent_appends",
            ok,
            processes=procs,
            rows_per_commit=batch,
            seconds=h.args.seconds,
            wall_s=round(wall, 2),
            commits=commits,
            commits_per_s=round(commits / h.args.seconds, 1),
            rows_per_s=round(commits * batch / h.args.seconds, 1),
            per_process_commits=[r.get("commits") for r in res],
            **lat(lats, "commit"),
            **chk,
            catalog_conflicts=conflicts,
            caller_errors=errors,
            caller_error_samples=[s for r in res for s in r.get("error_samples", [])][:2],
            retry_settings=retry,
            retry_settings_are_default=retry is default_retry,
        )
        log(
            f"[appends] p={procs} b={batch} commits={commits} lost={chk['lost']} "
            f"dup={chk['duplicated']} "
            f"conflicts={conflicts} errors={errors}"
        )


def case_visibility(h: Harness) -> None:
    cfg = h.cfg("visibility")
    con = lake_connect(cfg)
    con.execute(f"CREATE TABLE lake.records({COLUMNS})")
    n = max(20, int(h.args.seconds * 8))
    res = h.run_workers(
        [
            {"role": "vis_writer", "cfg": cfg, "n": n},
            {"role": "vis_reader", "cfg": cfg, "n": n, "seconds": h.args.seconds + 30},
        ],
        timeout=h.args.seconds + 90,
    )
    acks = dict(res[0].get("acks", []))
    seen = res[1].get("seen", [])
    lags, missed = [], 0
    for k, t_ack in acks.items():
        first = next((t for kk, t in seen if kk >= k), None)
        if first is None:
            missed += 1
        else:
            lags.append(first - t_ack)
    # Snapshot semantics, two independent DuckDB instances (as two replicas) in this process.
    a, b = lake_connect(cfg), lake_connect(cfg)
    count = "SELECT count(*) FROM lake.records WHERE tenant = 'vis'"
    base = scalar(b, count)
    insert_rows(a, [("vis", "sem-1", 10**9, "A", False, "x")])
    autocommit_fresh = scalar(b, count) == base + 1
    b.execute("BEGIN")
    in_txn_before = scalar(b, count)
    insert_rows(a, [("vis", "sem-2", 10**9 + 1, "A", False, "x")])
    in_txn_after = scalar(b, count)
    b.execute("COMMIT")
    after_commit = scalar(b, count)
    for c in (a, b, con):
        c.close()
    ok = missed == 0 and autocommit_fresh and after_commit == in_txn_before + 1
    h.emit(
        "visibility",
        ok,
        commits=len(acks),
        missed=missed,
        **lat(lags, "lag"),
        lag_min_ms=ms(min(lags) if lags else None),
        **lat(res[1].get("snap_lat", []), "snapshot_check"),
        **lat(res[1].get("read_lat", []), "read"),
        snapshot_checks=len(res[1].get("snap_lat", [])),
        autocommit_query_sees_new_commit=autocommit_fresh,
        open_txn_keeps_snapshot=in_txn_after == in_txn_before,
        sees_commit_after_txn_end=after_commit == in_txn_before + 1,
        note="lag = B's first read containing the row minus A's acknowledgement "
        "(same monotonic clock); "
        "B polls ducklake_current_snapshot() and reads only when the id moved",
    )
    log(f"[visibility] lag p50={ms(pct(lags, 50))}ms p99={ms(pct(lags, 99))}ms missed={missed}")


def case_compaction(h: Harness) -> None:
    cfg = h.cfg("compaction")
    con = lake_connect(cfg)
    con.execute(f"CREATE TABLE lake.records({COLUMNS})")
    secs = h.args.seconds
    specs = [
        {
            "role": "append",
            "cfg": cfg,
            "name": f"w{i}",
            "tenant": "c",
            "batch": 16,
            "mixed": True,
            "id_space": 400,
            "delete_p": 0.1,
            "log_snapshot": True,
            "seconds": secs,
            "ack_path": str(h.root / f"compaction-w{i}.ack"),
        }
        for i in range(2)
    ]
    specs.append({"role": "state_reader", "cfg": cfg, "tenant": "c", "seconds": secs})
    specs.append({"role": "compactor", "cfg": cfg, "seconds": secs, "grace_s": 2, "pause": 0.5})
    res = h.run_workers(specs, timeout=secs + 120)
    commits = sorted(
        (a["snap"], r) for s in specs[:2] for a in read_acks(Path(s["ack_path"])) for r in a["rows"]
    )
    obs = res[2].get("obs", [])
    # expected state at each observed snapshot, from the acknowledged commits
    expected: dict[int, tuple[int, str]] = {}
    rows_so_far: list = []
    i = 0
    for s in sorted({o[0] for o in obs}):
        while i < len(commits) and commits[i][0] <= s:
            rows_so_far.append(tuple(commits[i][1][1:]))
            i += 1
        expected[s] = state_py(rows_so_far)
    wrong = [o for o in obs if (o[1], o[2]) != expected[o[0]]]
    by_snap: dict[int, set] = {}
    for o in obs:
        by_snap.setdefault(o[0], set()).add(o[2])
    unstable = sum(1 for v in by_snap.values() if len(v) > 1)
    files_before, disk_before = file_count(con), h.disk_files(cfg, con)
    final_state_before = con.execute(state_sql(), ["c"]).fetchone()
    t0 = time.perf_counter()
    final_pass = maintenance(con, None)
    final_s = time.perf_counter() - t0
    files_after, disk_after = file_count(con), h.disk_files(cfg, con)
    final_state_after = con.execute(state_sql(), ["c"]).fetchone()
    want_final = state_py([tuple(r[1:]) for _, r in commits])
    con.close()
    passes = res[3].get("passes", [])
    ok = (
        not any(r.get("failed") for r in res)
        and not wrong
        and unstable == 0
        and not (res[2].get("errors") or {}).get("latest")
        and tuple(final_state_before) == want_final == tuple(final_state_after)
    )
    h.emit(
        "compaction_during_work",
        ok,
        writer_commits=sum(r.get("commits", 0) for r in res[:2]),
        writer_caller_errors=sum(r.get("errors", 0) for r in res[:2]),
        reads=len(obs),
        reads_of_old_snapshots=sum(1 for o in obs if o[3] == "old"),
        wrong_reads=len(wrong),
        snapshots_with_two_hashes=unstable,
        reader_errors_latest_snapshot=(res[2].get("errors") or {}).get("latest"),
        reader_errors_old_snapshot=(res[2].get("errors") or {}).get("old"),
        reader_error_samples=res[2].get("error_samples"),
        maintenance_passes=len(passes),
        maintenance_errors=res[3].get("errors"),
        maintenance_error_samples=res[3].get("error_samples"),
        maintenance_pass_p50_s=pct([p["s"] for p in passes], 50),
        files_merged_during_run=sum(p["files_merged"] for p in passes),
        files_deleted_during_run=sum(p["files_deleted"] for p in passes),
        files_before=files_before,
        files_after=files_after,
        disk_parquet_before=disk_before,
        disk_parquet_after=disk_after,
        final_pass=final_pass,
        final_pass_s=round(final_s, 3),
        final_state_matches_acks=tuple(final_state_before) == want_final,
        state_unchanged_by_final_pass=tuple(final_state_before) == tuple(final_state_after),
        live_ids=want_final[0],
    )
    log(f"[compaction] reads={len(obs)} wrong={len(wrong)} files {files_before}->{files_after}")


def case_kill9(h: Harness) -> None:
    cfg = h.cfg("kill9")
    con = lake_connect(cfg)
    con.execute(f"CREATE TABLE lake.records({COLUMNS})")
    reps = h.args.kills
    ack_paths, killed_after = [], []
    for rep in range(reps):
        ack = h.root / f"kill-{rep}.ack"
        ack_paths.append(ack)
        p = h.spawn(
            {"role": "kill_writer", "cfg": cfg, "name": f"k{rep:02d}", "ack_path": str(ack)}
        )
        assert p.stdout.readline().strip() == "READY"
        p.stdin.write("GO\n")
        p.stdin.flush()
        delay = random.uniform(0.05, 0.8)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed_after.append(delay)
    acked = [tuple(r[1:]) for path in ack_paths for batch in read_acks(path) for r in batch]
    present = table_rows(con, "kill")
    chk = multiset_check(acked, present)
    readable = writable = False
    try:
        insert_rows(con, [("kill", "after", 1, "x", False, "after")])
        writable = scalar(con, "SELECT count(*) FROM lake.records WHERE id = 'after'") == 1
        readable = scalar(con, "SELECT count(*) FROM lake.records") >= len(acked)
    except Exception as exc:
        log("[kill9] after:", exc)
    orphans = len(
        con.execute(
            "CALL ducklake_delete_orphaned_files('lake', dry_run => true, cleanup_all => true)"
        ).fetchall()
    )
    idle_txn = h.pg.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = 'kill9' AND state LIKE 'idle in%'"
    )[0][0]
    con.close()
    ok = chk["lost"] == 0 and chk["duplicated"] == 0 and chk["hash_match"] and readable and writable
    h.emit(
        "kill9",
        ok,
        kills=reps,
        commits_acked=sum(len(read_acks(p)) for p in ack_paths),
        **chk,
        readable_after=readable,
        writable_after=writable,
        orphaned_files=orphans,
        catalog_idle_in_txn_after=idle_txn,
        kill_delay_s=[round(min(killed_after), 2), round(max(killed_after), 2)],
    )
    log(f"[kill9] acked={chk['rows_acked']} lost={chk['lost']} orphans={orphans}")


def race(cfg, first: list[str], second: list[str]) -> dict[str, Any]:
    """Two replicas open a transaction each, run their statements, then commit in order."""
    a, b = lake_connect(cfg), lake_connect(cfg)
    out = {}
    for con in (a, b):
        con.execute("BEGIN")
    for con, stmts in ((a, first), (b, second)):
        for sql in stmts:
            con.execute(sql)
    for name, con in (("first", a), ("second", b)):
        try:
            con.execute("COMMIT")
            out[f"{name}_committed"] = True
        except Exception as exc:
            out[f"{name}_committed"] = False
            out[f"{name}_error"] = str(exc).splitlines()[-1][:200]
    a.close()
    b.close()
    return out


def case_concurrent_deletes(h: Harness) -> None:
    from collections import Counter

    cfg = h.cfg("deletes")
    con = lake_connect(cfg)
    con.execute(f"CREATE TABLE lake.records({COLUMNS})")
    n = 960
    seed = [("del", f"d{i:05d}", 1, "seed", False, payload()) for i in range(n)]
    for i in range(0, n, 16):  # 60 files of 16 rows (> the inlining limit)
        insert_rows(con, seed[i : i + 16])
    ups_ids = [f"u{i:03d}" for i in range(60)]
    insert_rows(con, [("ups", u, 1, "seed", False, payload()) for u in ups_ids[:30]])  # one file
    secs = max(3.0, h.args.seconds / 2)
    # (a) 3 processes delete disjoint ids, one per commit
    res_d = h.run_workers(
        [
            {
                "role": "deleter",
                "cfg": cfg,
                "mode": "delete",
                "name": f"d{w}",
                "seconds": secs,
                "ids": [f"d{i:05d}" for i in range(n) if i % 3 == w],
            }
            for w in range(3)
        ],
        timeout=secs + 120,
    )
    # (b) 3 processes churn (DELETE + INSERT) 60 shared ids, 30 of them new
    res_u = h.run_workers(
        [
            {
                "role": "deleter",
                "cfg": cfg,
                "mode": "churn",
                "name": f"u{w}",
                "seconds": secs,
                "ids": ups_ids,
            }
            for w in range(3)
        ],
        timeout=secs + 120,
    )
    rows = table_rows(con, "del")
    ids = [r[0] for r in rows]
    deleted = {i for r in res_d for i in r.get("acks", [])}
    del_dup = len(ids) - len(set(ids))
    resurrected = len(deleted & set(ids))
    ups = table_rows(con, "ups")
    cnt = Counter(r[0] for r in ups)
    acked_ups = [tuple(r) for res in res_u for r in res.get("acks", [])]
    touched = {r[1] for r in acked_ups} | set(ups_ids[:30])
    ups_dup = sum(c - 1 for c in cnt.values() if c > 1)
    ups_missing = sum(1 for u in touched if cnt[u] == 0)
    acked_keys = {(r[1], r[2], r[3]) for r in acked_ups}
    unacked_visible = sum(1 for r in ups if r[2] != "seed" and (r[0], r[1], r[2]) not in acked_keys)
    files = file_count(con)
    # (c) the two known races, replayed step by step with two replicas
    insert_rows(
        con, [("r1", f"r{i:03d}", 1, "seed", False, "x") for i in range(100)]
    )  # one data file
    r1215 = race(
        cfg,
        ["DELETE FROM lake.records WHERE tenant = 'r1' AND id = 'r050'"],
        ["DELETE FROM lake.records WHERE tenant = 'r1' AND id BETWEEN 'r050' AND 'r079'"],
    )
    r1 = Counter(r[0] for r in table_rows(con, "r1"))
    r1215.update(
        rows_expected=70,
        rows_present=sum(r1.values()),
        deleted_rows_visible=sum(c for k, c in r1.items() if "r050" <= k <= "r079"),
    )
    r1393 = race(
        cfg,
        [
            "DELETE FROM lake.records WHERE tenant = 'r2' AND id = 'new'",
            "INSERT INTO lake.records VALUES ('r2', 'new', 1, 'A', false, 'a')",
        ],
        [
            "DELETE FROM lake.records WHERE tenant = 'r2' AND id = 'new'",
            "INSERT INTO lake.records VALUES ('r2', 'new', 1, 'B', false, 'b')",
        ],
    )
    r1393["rows_for_key"] = len(table_rows(con, "r2"))
    con.close()
    dup_1215 = r1215["rows_present"] != 70 or r1215["deleted_rows_visible"] > 0
    ok = (
        del_dup == 0
        and resurrected == 0
        and ups_dup == 0
        and ups_missing == 0
        and not dup_1215
        and r1393["rows_for_key"] == 1
    )
    h.emit(
        "concurrent_deletes",
        ok,
        processes=3,
        seconds=secs,
        delete_commits=len(deleted),
        delete_conflicts=sum(r.get("errors", 0) for r in res_d),
        delete_error_sample=next((s for r in res_d for s in r.get("error_samples", [])), None),
        rows_expected=n - len(deleted),
        rows_present=len(ids),
        duplicated_after_delete=del_dup,
        resurrected=resurrected,
        **lat([x for r in res_d for x in r.get("lat", [])], "delete"),
        churn_commits=sum(len(r.get("lat", [])) for r in res_u),
        churn_conflicts=sum(r.get("errors", 0) for r in res_u),
        churn_error_samples=sorted(
            {s.splitlines()[-1][:160] for r in res_u for s in r.get("error_samples", [])}
        ),
        churn_ids=len(ups_ids),
        churn_rows_present=len(ups),
        churn_duplicated=ups_dup,
        churn_missing=ups_missing,
        churn_unacked_visible=unacked_visible,
        files_after=files,
        race_inlined_vs_parquet_delete=r1215,
        race_zero_row_delete_then_insert=r1393,
        note="race_*: ducklake issues #1215/#1084 (small inlined + large parquet delete of one row "
        "both commit; deleted rows come back) and #1393 (DELETE matching nothing + INSERT "
        "does not conflict: duplicate key); fixes are not in the 1.5.5 extension (d8a1881e)",
    )
    log(
        f"[deletes] dup={del_dup} resurrected={resurrected} churn_dup={ups_dup} "
        f"churn_missing={ups_missing} "
        f"r1215={r1215} r1393={r1393}"
    )


def case_small_files(h: Harness) -> None:
    for inline in (True, False):
        name = "small_inline" if inline else "small_noinline"
        cfg = h.cfg(name)
        con = lake_connect(cfg)
        con.execute(f"CREATE TABLE lake.records({COLUMNS})")
        if not inline:
            con.execute("CALL lake.set_option('data_inlining_row_limit', 0)")
        hlc = Hlc()
        lats, rows = [], []
        for i in range(h.args.small_commits):
            r = ("s", f"s{i % 700:05d}", hlc.next(), "w", i % 10 == 9, payload())
            rows.append(r[1:])
            t0 = time.perf_counter()
            insert_rows(con, [r])
            lats.append(time.perf_counter() - t0)
        want = state_py(rows)

        def timed_read(c) -> tuple[float, tuple]:
            best, got = 1e9, None
            for _ in range(3):
                t0 = time.perf_counter()
                got = c.execute(state_sql(), ["s"]).fetchone()
                best = min(best, time.perf_counter() - t0)
            return best, tuple(got)

        fresh = lake_connect(cfg)  # a replica that never saw these commits
        read_before, st_before = timed_read(fresh)
        files_before, disk_before = file_count(con), h.disk_files(cfg, con)
        t0 = time.perf_counter()
        pass_out = maintenance(con, None)
        maint_s = time.perf_counter() - t0
        fresh2 = lake_connect(cfg)
        read_after, st_after = timed_read(fresh2)
        files_after, disk_after = file_count(con), h.disk_files(cfg, con)
        catalog_bytes = h.pg.query("SELECT pg_database_size(current_database())", name)[0][0]
        for c in (con, fresh, fresh2):
            c.close()
        ok = st_before == want == st_after
        h.emit(
            "small_files",
            ok,
            data_inlining=inline,
            commits=len(lats),
            **lat(lats, "commit"),
            files_before=files_before,
            disk_parquet_before=disk_before,
            read_current_state_before_ms=ms(read_before),
            maintenance=pass_out,
            maintenance_s=round(maint_s, 3),
            files_after=files_after,
            disk_parquet_after=disk_after,
            read_current_state_after_ms=ms(read_after),
            catalog_db_bytes=catalog_bytes,
            live_ids=want[0],
            state_correct=ok,
        )
        log(
            f"[small_files] inline={inline} files {files_before}->{files_after} "
            f"read {ms(read_before)}->{ms(read_after)} ms"
        )


CASE_FUNCS = {
    "concurrent_appends": case_concurrent_appends,
    "visibility": case_visibility,
    "compaction_during_work": case_compaction,
    "kill9": case_kill9,
    "concurrent_deletes": case_concurrent_deletes,
    "small_files": case_small_files,
}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--seconds", type=float, default=10.0, help="duration of each timed run (default 10)"
    )
    ap.add_argument(
        "--data", default="", help="data files: DIR or s3://bucket/prefix (default: a temp dir)"
    )
    ap.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES)
    )
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--small-commits", type=int, default=1000)
    ap.add_argument("--s3-endpoint", default=os.environ.get("S3_ENDPOINT", ""))
    ap.add_argument("--s3-key", default=os.environ.get("AWS_ACCESS_KEY_ID", "testing"))
    ap.add_argument("--s3-secret", default=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"))
    ap.add_argument(
        "--start-moto", action="store_true", help="start moto_server on 127.0.0.1 for s3://"
    )
    ap.add_argument(
        "--moto-bin",
        default=str(Path(sys.executable).parent / "moto_server"),
        help="moto_server for --start-moto (default: the one beside this interpreter)",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (catalog, logs, acks)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker_main(json.loads(args.worker))
        return
    import duckdb

    h = Harness(args)
    h.run_id = time.strftime("%Y%m%d-%H%M%S")
    t_all = time.monotonic()
    try:
        h.pg.start()
        probe = lake_connect(
            {
                "dsn": h.pg.create_db("probe"),
                "data": h.data_path("probe"),
                "s3": h.s3,
                "ext_dir": str(h.root / "ext"),
            }
        )
        exts = dict(
            probe.execute(
                "SELECT extension_name, extension_version FROM duckdb_extensions() "
                "WHERE loaded AND extension_name IN ('ducklake', 'postgres_scanner', "
                "'httpfs')"
            ).fetchall()
        )
        probe.close()
        h.versions = {
            "python": sys.version.split()[0],
            "duckdb": duckdb.__version__,
            "ducklake_ext": exts.get("ducklake"),
            "postgres_scanner_ext": exts.get("postgres_scanner"),
            "postgres": h.pg.version(),
            "nproc": os.cpu_count(),
        }
        log("versions", h.versions, "root", h.root)
        for case in args.cases.split(","):
            t0 = time.monotonic()
            try:
                CASE_FUNCS[case](h)
            except Exception as exc:
                traceback.print_exc()
                h.emit(case, False, error=f"{type(exc).__name__}: {str(exc)[:500]}")
            log(f"  {case}: {time.monotonic() - t0:.1f} s")
    finally:
        h.close()
    log(f"total {time.monotonic() - t_all:.1f} s")


if __name__ == "__main__":
    main()
